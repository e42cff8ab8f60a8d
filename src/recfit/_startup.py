"""Imported first by ``import recfit``, before torch and the rest of the library: when this
process is ``recfit train`` of a fit that may run the row-wise kernel (not one on the dense
path or the GPU), the kernel starts compiling in a separate process now, so that its
compile overlaps the imports and the data loading
(:func:`recfit._compile_ahead.start_for_command_line`; nothing happens in any other
process)."""

from recfit._compile_ahead import start_for_command_line

start_for_command_line()
