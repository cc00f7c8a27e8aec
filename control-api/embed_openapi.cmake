# Embeds control-api/openapi.json into the binary as api_openapi_json[]
# (served at GET /v1/openapi.json). Run with -DIN=<json> -DOUT=<c file>.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* generated from control-api/openapi.json; do not edit */\n#include <stddef.h>\n"
     "const char api_openapi_json[] = {${body}0};\nconst size_t api_openapi_json_len = ${len};\n")
