-- SPDX-License-Identifier: MIT
-- bench/send.lua — wrk script for workload (d): each request sends one
-- timestamped message to a random connection.
--   wsgate, wsgate-cluster, wsgate-tls, wsgate-deflate:
--            POST /v1/connections/{id}/messages (text/plain), ids from BENCH_IDS
--   wsgate-aws: POST /@connections/{id} (AWS's PostToConnection, bearer token)
--   wsgate-grip: POST /publish/ to channel "c<id>", ids from BENCH_IDS (the
--            backend subscribed each connection to its own on OPEN)
--   pushpin: POST /publish/ to channel "c<i>" (each connection subscribed to its own)
-- The payload "t=<CLOCK_MONOTONIC ns> c=0 n=1" lets wsload measure delivery;
-- BENCH_FILL (JSON-escaped for Pushpin) follows it, to the run's payload size.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_ts;
int clock_gettime(int clk, bench_ts *ts);
]]
local ts = ffi.new("bench_ts")
local target = os.getenv("BENCH_TARGET") or "pushpin"
local wsgate = target:sub(1, 6) == "wsgate" -- ids from BENCH_IDS, bearer token
local grip = target == "wsgate-grip" or target == "pushpin" -- GRIP publish
local aws = target == "wsgate-aws"
local fill = os.getenv("BENCH_FILL") or ""
local n = tonumber(os.getenv("BENCH_N") or "1")
local token = os.getenv("BENCH_TOKEN") or ""
local ids = {}

-- Each request is a prebuilt head (request line, headers, the body up to the
-- timestamp) and the timestamp: formatting every request anew made wrk the
-- biggest CPU user on this 2-core box, taking the server's share.
local heads, tails = {}, {}
local stamp_len

local function stamp()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC, the clock wsload reads
  return string.format("t=%d%09d c=0 n=1", tonumber(ts.tv_sec), tonumber(ts.tv_nsec))
end

local function build(i, s)
  local auth = wsgate and ("Bearer " .. token) or nil
  if not grip then
    local path = aws and "/@connections/" .. ids[i + 1] or "/v1/connections/" .. ids[i + 1] .. "/messages"
    return wrk.format("POST", path, {["Authorization"] = auth, ["Content-Type"] = "text/plain"}, s .. fill), fill
  end
  local tail = fill .. '"}}}]}'
  local body = '{"items":[{"channel":"c' .. (wsgate and ids[i + 1] or i) ..
    '","formats":{"ws-message":{"content":"' .. s .. tail
  return wrk.format("POST", "/publish/", {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body), tail
end

function init(args)
  -- BENCH_SEED: several wrk started in the same second pick different ids
  math.randomseed(os.time() + tonumber(os.getenv("BENCH_SEED") or "0"))
  if wsgate then
    for line in io.lines(os.getenv("BENCH_IDS")) do
      ids[#ids + 1] = line
    end
    n = #ids
  end
  local s = stamp()
  stamp_len = #s
  for i = 0, n - 1 do
    local req, tail = build(i, s)
    heads[i + 1] = req:sub(1, #req - #s - #tail)
    tails[i + 1] = tail
  end
end

function request()
  local i = math.random(0, n - 1)
  local s = stamp()
  if #s ~= stamp_len then -- the seconds gained a digit: Content-Length differs
    return (build(i, s))
  end
  return heads[i + 1] .. s .. tails[i + 1]
end
