"""One module per rule: `run(inputs, outputs, params)` reads files, calls the blocks, writes files."""
