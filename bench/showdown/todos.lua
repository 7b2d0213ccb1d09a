-- wrk script for the showdown's REST CRUD mix on /api/todos (bench/peers/SHOWDOWN.md): of every
-- 10 requests, 6 read one todo, 2 create one, 1 patches one and 1 reads a page of 20. Reads and
-- patches go to ids this connection created (so they exist: no 404 is counted as work), starting
-- with a create. Prints WRKJSON (report.lua) at the end.
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. '../report.lua')

local ids, n, counter = {}, 0, 0
local json_hdr = { ["Content-Type"] = "application/json" }

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  counter = counter + 1
  local k = counter % 10
  if #ids == 0 or k == 1 or k == 2 then
    return wrk.format("POST", "/api/todos", json_hdr,
                      '{"title":"todo ' .. counter .. '","done":false}')
  elseif k == 3 then
    return wrk.format("PATCH", "/api/todos/" .. ids[math.random(#ids)], json_hdr,
                      '{"done":true}')
  elseif k == 4 then
    return wrk.format("GET", "/api/todos?limit=20&after=" .. (ids[1] - 1))
  end
  return wrk.format("GET", "/api/todos/" .. ids[math.random(#ids)])
end

function response(status, headers, body)
  if status == 201 then
    local id = body:match('"id"%s*:%s*(%d+)')
    if id and #ids < 1000 then
      ids[#ids + 1] = tonumber(id)
    end
  end
end
