-- summary.lua — busted output handler: plainTerminal's report, then one closing line
-- `busted: N passed, N failed, N skipped` (errors count as failed) that CI reads.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.plainTerminal")(options)

  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    io.write(string.format("busted: %d passed, %d failed, %d skipped\n",
      handler.successesCount, failed, handler.pendingsCount))
    io.flush()
    return nil, true
  end)

  return handler
end
