-- wrk script: HTTP/1.1 pipelining. Each connection sends DEPTH requests (default 16) for the
-- URL's path in one write and waits for all DEPTH responses before the next batch.
-- Usage: wrk -s bench/pipeline.lua URL -- [DEPTH]
-- wrk times a whole batch, so its latency percentiles are per batch, not per request.
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. 'report.lua')

local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local one = wrk.format(nil, nil)
  batch = string.rep(one, depth)
end

function request()
  return batch
end
