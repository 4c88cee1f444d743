"""Program-order check of Triton kernels, for what the interpreter cannot show.

The interpreter runs a launch's programs one after another, in grid order, so a kernel whose
programs race (one reads what another writes, or two write the same element) can still pass
there. `schedule` patches the interpreter, for the launches inside it, to run the programs
in a reversed or shuffled order, or with every program's loads taken before any program's
stores (the worst interleaving: stores are held back until the launch ends; a program still
sees its own stores), and it traces every program's loaded and stored bytes: `hazards` then
names each byte that one program writes and another reads or writes, the race itself, in
whatever order the programs happened to run. Triton has no hook for this (its interpreter
runs the grid in a fixed loop), hence the patch of `triton.runtime.interpreter`. Atomics are
outside the model: kernels that use them are traced but not reordered correctly.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

ORDERS = ("forward", "reversed", "shuffled", "loads-first")


@dataclass
class Launch:
    kernel: str
    buffers: list[tuple[str, int, int, int]]  # (argument, first byte, end byte, element size)
    programs: int = 0
    loads: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (program, byte addrs)
    stores: list[tuple[int, np.ndarray]] = field(default_factory=list)
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)

    def where(self, byte: int) -> str:
        for name, start, end, size in self.buffers:
            if start <= byte < end:
                return f"{name}[{(byte - start) // size}]"
        return f"address {byte:#x}"


@dataclass
class Trace:
    launches: list[Launch] = field(default_factory=list)

    def hazards(self) -> list[str]:
        """One line per launch with cross-program conflicts: how many bytes, and the first."""
        return [line for launch in self.launches if (line := _launch_hazards(launch))]


def _bytes(addrs: np.ndarray, itemsize: int) -> np.ndarray:
    return (addrs.astype(np.uint64)[:, None] + np.arange(itemsize, dtype=np.uint64)).ravel()


def _pairs(accesses: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Unique (byte, program) pairs, sorted by byte."""
    if not accesses:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    byte = np.concatenate([a for _, a in accesses])
    prog = np.concatenate([np.full(len(a), p, np.int64) for p, a in accesses])
    pairs = np.unique(np.stack([byte, prog.astype(np.uint64)], 1), axis=0)
    return pairs[:, 0], pairs[:, 1].astype(np.int64)


def _per_buffer(launch: Launch, byte: np.ndarray, describe) -> list[str]:
    """For each kernel argument holding some of the conflicting bytes `byte` (sorted): how many
    elements, and `describe(i)` of the first conflict, at index i of `byte`."""
    lines = []
    for name, start, end, size in launch.buffers:
        inside = np.flatnonzero((byte >= start) & (byte < end))
        if inside.size:
            elements = np.unique((byte[inside] - np.uint64(start)) // np.uint64(size)).size
            lines.append(f"{name}: {elements} elements {describe(inside[0])}")
    return lines


def _launch_hazards(launch: Launch) -> str | None:
    w_byte, w_prog = _pairs(launch.stores)
    r_byte, r_prog = _pairs(launch.loads)
    multi = np.flatnonzero(w_byte[1:] == w_byte[:-1])
    issues = _per_buffer(
        launch,
        w_byte[multi],
        lambda i: (
            f"written by several programs, first {launch.where(int(w_byte[multi[i]]))} "
            f"by programs {w_prog[multi[i]]} and {w_prog[multi[i] + 1]}"
        ),
    )
    if w_byte.size and r_byte.size:
        pos = np.clip(np.searchsorted(w_byte, r_byte), 0, w_byte.size - 1)
        written = w_byte[pos] == r_byte
        # Compare against every writer of the byte: the first and the last (sorted) suffice.
        last = np.clip(np.searchsorted(w_byte, r_byte, side="right") - 1, 0, w_byte.size - 1)
        conflict = np.flatnonzero(written & ((w_prog[pos] != r_prog) | (w_prog[last] != r_prog)))

        def describe(i):
            j = conflict[i]
            writer = w_prog[pos[j]] if w_prog[pos[j]] != r_prog[j] else w_prog[last[j]]
            return (
                f"read by one program and written by another, first "
                f"{launch.where(int(r_byte[j]))} written by program {writer} and read by "
                f"program {r_prog[j]}"
            )

        issues += _per_buffer(launch, r_byte[conflict], describe)
    if not issues:
        return None
    return f"{launch.kernel} ({launch.programs} programs): " + "; ".join(issues)


@contextlib.contextmanager
def schedule(order: str = "forward", seed: int = 0):
    """Run the interpreted Triton launches inside in `order` (ORDERS) and trace them.

    Yields the Trace. Needs TRITON_INTERPRET=1 set before triton was imported.
    """
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
    from triton.runtime import interpreter as ti

    builder = ti.interpreter_builder
    trace = Trace()
    rng = np.random.default_rng(seed)
    state = {"launch": None, "perm": None, "k": 0, "program": 0}
    loads_first = order == "loads-first"
    original_call = ti.GridExecutor.__call__
    set_grid_dim, set_grid_idx = builder.set_grid_dim, builder.set_grid_idx
    masked_load, masked_store = builder.create_masked_load, builder.create_masked_store

    def call(self, *args, **kwargs):
        names = list(self.arg_names)
        values = list(args) + [kwargs.get(n) for n in names[len(args) :]]
        buffers = [
            (n, v.data_ptr(), v.data_ptr() + v.numel() * v.element_size(), v.element_size())
            for n, v in zip(names, values, strict=False)
            if hasattr(v, "data_ptr") and hasattr(v, "element_size")
        ]
        launch = Launch(getattr(self.fn, "__name__", str(self.fn)), buffers)
        state["launch"] = launch
        try:
            return original_call(self, *args, **kwargs)
        finally:
            state["launch"] = None
            trace.launches.append(launch)
            for program in state["perm"] if launch.pending else ():
                for addrs, vals in launch.pending.get(int(program), ()):
                    ti._interpreter.store(addrs, vals, np.ones(addrs.shape, bool))

    def grid_dim(nx, ny, nz):
        n = nx * ny * nz
        perm = np.arange(n)
        if order == "reversed":
            perm = perm[::-1]
        elif order == "shuffled":
            perm = rng.permutation(n)
        state.update(perm=perm, k=0, dims=(nx, ny, nz))
        if state["launch"] is not None:
            state["launch"].programs = n
        return set_grid_dim(nx, ny, nz)

    def grid_idx(x, y, z):
        _, ny, nz = state["dims"]
        program = int(state["perm"][state["k"]])
        state["k"] += 1
        state["program"] = program
        return set_grid_idx(program // (ny * nz), (program // nz) % ny, program % nz)

    def load(ptrs, mask, *rest):
        result = masked_load(ptrs, mask, *rest)
        launch = state["launch"]
        if launch is None:
            return result
        addrs = np.broadcast_to(ptrs.data, result.data.shape)
        on = np.broadcast_to(mask.data, addrs.shape).astype(bool)  # masks may be int
        launch.loads.append((state["program"], _bytes(addrs[on], result.data.itemsize)))
        for p_addrs, p_vals in launch.pending.get(state["program"], ()):
            _overlay(result.data, addrs, on, p_addrs, p_vals)
        return result

    def store(ptrs, value, mask, *rest):
        launch = state["launch"]
        if launch is None:
            return masked_store(ptrs, value, mask, *rest)
        vals = np.broadcast_to(value.data, np.shape(ptrs.data))
        on = np.broadcast_to(mask.data, vals.shape).astype(bool)
        addrs = ptrs.data[on] if np.ndim(ptrs.data) else np.broadcast_to(ptrs.data, on.shape)[on]
        launch.stores.append((state["program"], _bytes(addrs, vals.itemsize)))
        if not loads_first:
            return masked_store(ptrs, value, mask, *rest)
        if addrs.size:  # a store masked off entirely writes nothing: nothing to hold back
            launch.pending.setdefault(state["program"], []).append((addrs.copy(), vals[on].copy()))
        return None

    ti.GridExecutor.__call__ = call
    builder.set_grid_dim, builder.set_grid_idx = grid_dim, grid_idx
    builder.create_masked_load, builder.create_masked_store = load, store
    try:
        yield trace
    finally:
        ti.GridExecutor.__call__ = original_call
        for name in ("set_grid_dim", "set_grid_idx", "create_masked_load", "create_masked_store"):
            vars(builder).pop(name, None)


def _overlay(out, addrs, on, p_addrs, p_vals) -> None:
    """Give a program back its own held-back stores: the latest store of each address wins."""
    order = np.argsort(p_addrs, kind="stable")
    sorted_addrs = p_addrs[order]
    pos = np.searchsorted(sorted_addrs, addrs, side="right") - 1
    hit = on & (pos >= 0) & (sorted_addrs[np.clip(pos, 0, None)] == addrs)
    if hit.any():
        out[hit] = p_vals[order][pos[hit]].astype(out.dtype, copy=False)
