-- wrk script for the switchyard benchmark: POST /v1/chat/completions.
--
--   wrk ... -s bench/chat.lua URL -- plain      non-streaming chat completion
--   wrk ... -s bench/chat.lua URL -- stream     streaming ("stream": true)
--
-- Every request carries its own x-user-id (the router's sticky key), so the 50%
-- flag splits the load between the two providers. The requests are formatted once
-- in init() (4096 distinct user ids per thread, used in turn): the load generator
-- spends its CPU on the network, not on Lua string building, and does the same
-- work whichever server it is pointed at.
--
-- done() prints one line, "wrk-json {...}", with the counts and the latency
-- percentiles in microseconds; the driver (bench/run.py) reads it. Every error
-- class wrk knows is in it: connect, read, write, timeout, and status (>= 400).

local POOL = 4096
local requests = {}
local n = 0
local thread_id = 0
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("thread_id", counter)
end

function init(args)
    local stream = args[1] == "stream"
    local body = '{"model":"gpt-4.1","messages":[{"role":"system","content":"You are terse."},' ..
        '{"role":"user","content":"Write twenty words about switching yards."}],' ..
        '"temperature":0.2' .. (stream and ',"stream":true' or '') .. '}'
    local tid = tonumber(thread_id) or 0
    for i = 1, POOL do
        local headers = {
            ["Content-Type"] = "application/json",
            ["Accept"] = stream and "text/event-stream" or "application/json",
            ["Authorization"] = "Bearer sk-bench",
            ["x-user-id"] = string.format("user-%d-%d", tid, i),
        }
        requests[i] = wrk.format("POST", nil, headers, body)
    end
end

function request()
    n = n % POOL + 1
    return requests[n]
end

function done(summary, latency, reqs)
    local e = summary.errors
    io.write(string.format(
        'wrk-json {"duration_us":%d,"requests":%d,"bytes":%d,' ..
        '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"err_status":%d,' ..
        '"lat_mean":%.1f,"lat_max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}\n',
        summary.duration, summary.requests, summary.bytes,
        e.connect, e.read, e.write, e.timeout, e.status,
        latency.mean, latency.max,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9)))
end
