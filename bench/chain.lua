-- wrk script of bench/run.py: each thread alternates create and accept, accepting the orders its
-- own creates returned (the newest first): create+accept chains, as perfbar's chain.lua does.
-- Its argument (after `--` on wrk's command line) is a file with one line per thread,
-- tab-separated:
--   create_path  accept_prefix  accept_suffix  merchant_token  creator_token  create_body
-- An accept goes to accept_prefix .. id .. accept_suffix; an empty token sends no Authorization.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

local c, queue = {}, {}
function init(args)
  local lines = {}
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
  local line = lines[((index - 1) % #lines) + 1]
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do c[#c + 1] = field end
end

function request()
  local h = {["Content-Type"] = "application/json"}
  if #queue > 0 then
    local id = table.remove(queue)
    if c[5] ~= "" then h["Authorization"] = "Bearer " .. c[5] end
    return wrk.format("POST", c[2] .. id .. c[3], h, "")
  end
  if c[4] ~= "" then h["Authorization"] = "Bearer " .. c[4] end
  return wrk.format("POST", c[1], h, c[6])
end

function response(status, headers, body)
  if (status == 200 or status == 201) and body:find('"pending_acceptance"', 1, true) then
    local id = body:match('"id"%s*:%s*"([^"]+)"') or body:match('"id"%s*:%s*(%d+)')
    if id then queue[#queue + 1] = id end
  end
end
