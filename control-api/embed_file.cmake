# SPDX-License-Identifier: MIT
# Embeds a source file into the binary as a NUL-terminated const char
# NAME[] and size_t NAME_len (control-api/openapi.json is served at
# GET /v1/openapi.json, control-api/dashboard.html at GET /dashboard).
# Run with -DIN=<file> -DOUT=<c file> -DNAME=<C identifier>.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
get_filename_component(src ${IN} NAME)
file(WRITE ${OUT} "/* generated from control-api/${src}; do not edit */\n#include <stddef.h>\n"
     "const char ${NAME}[] = {${body}0};\nconst size_t ${NAME}_len = ${len};\n")
