"""Software prefetch of factor rows: ask for a row's cache lines before it is read.

A sample reads a few random item rows (its candidates, its positive) from
factor matrices larger than the core's caches; drawing the next sample's
candidates one step ahead and prefetching their rows lets those reads overlap
the current sample's arithmetic. Prefetching never faults and never changes a
result, only when the memory arrives.
"""

from __future__ import annotations

from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

# Cache lines asked for per row: 5 x 64 bytes cover 80 float32 columns (64
# factors and the bias); longer rows get their first 5 lines, and the
# hardware prefetcher follows on from there.
_LINES = 5
_LINE_BYTES = 64


@intrinsic
def prefetch_row(typingctx, array, row):
    """Prefetch the first cache lines of ``array[row]`` (a 2-D array) for reading."""
    if not isinstance(array, types.Array) or array.ndim != 2 or \
            not isinstance(row, types.Integer):
        return None
    sig = types.void(array, row)

    def codegen(context, builder, signature, args):
        arrayty = signature.args[0]
        ary = context.make_array(arrayty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = cgutils.get_item_pointer2(
            context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
            strides=cgutils.unpack_tuple(builder, ary.strides), layout=arrayty.layout,
            inds=[index, zero])
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        prefetch = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        base = builder.bitcast(ptr, byte_ptr)
        for line in range(_LINES):
            address = builder.gep(base, [ir.Constant(ir.IntType(64), line * _LINE_BYTES)])
            # (address, read, locality 3: keep in all cache levels, data cache)
            builder.call(prefetch, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


if config.DISABLE_JIT:
    # NUMBA_DISABLE_JIT=1 runs the kernels as Python (coverage, debugging), where an
    # intrinsic cannot run; a prefetch is only a hint, so there it does nothing.
    def prefetch_row(array, row):  # noqa: F811
        """Nothing (pure Python: see above)."""
