"""Specialised kernels from one template: each compiles only the code path it runs.

A kernel that picks its optimiser with a runtime code compiles every
optimiser's row update at each call site, and a first call pays for all of
them. :func:`specialise` instead makes, from one template function, a new
function whose global names (e.g. ``row_update``) are bound to the given
njit leaves, under its own qualified name. Numba then types, compiles and
caches each specialisation separately (its cache file is named after the
qualified name), and only when it is first called.

Why not the alternatives: a closure over the leaves hashes the closed-over
dispatchers into the cache key, which changes every session (the cache then
never hits); passing a leaf as an argument has the same problem; a runtime
code compiles every branch.
"""

from __future__ import annotations

import types

from numba.core.compiler import Compiler


def specialise(template, name, **leaves):
    """A copy of the plain function ``template`` named ``name``, with ``leaves`` as globals.

    Parameters
    ----------
    template : function
        A plain Python function (not yet jitted) of a kernel module.
    name : str
        Unique in the module: it names the copy and its numba cache files.
    **leaves
        Global names of the template and the njit functions they stand for.

    Returns
    -------
    function
        To be wrapped by ``njit(cache=True, ...)`` in the module.
    """
    missing = [key for key in leaves if key not in template.__code__.co_names]
    if missing:
        raise NameError(f"{template.__name__} uses no global named {', '.join(missing)}")
    namespace = dict(template.__globals__)
    namespace.update(leaves)
    func = types.FunctionType(template.__code__, namespace, name, template.__defaults__,
                              template.__closure__)
    func.__qualname__ = name
    func.__module__ = template.__module__
    func.__doc__ = template.__doc__
    return func


class NoAliasCompiler(Compiler):
    """Numba's default pipeline, with the array arguments marked ``noalias``.

    Numba compiles the body of a ``prange`` loop so when it can prove the
    arrays do not overlap; a kernel whose array arguments never overlap (the
    factors, the optimiser state and the scratch rows are separate
    allocations) gets the same code this way: LLVM may keep values in
    registers across stores and vectorise the row loops.
    """

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()
