"""host_cost's dispatch-only stand-in: the entry points on meta tensors, in a child process.

On meta tensors a torch op dispatches and computes nothing, which is what the host pays on
CUDA (the kernel runs on the device) but for the launch itself. Only, torch registers
Python meta kernels (torch._meta_registrations: torch._refs, the prims) over most ops'
C++ ones, for torch.compile's shape inference; they cost 1-3000 µs an op (clamp ~3 ms),
where the C++ meta kernel, like a CUDA op's host side, costs ~1 µs. This child drops
them (`Library._destroy()` of torch's meta library: no way back in the process, hence a
child), so every op runs its C++ meta kernel. Two ops have none: `_assert_async` (the
CUDA path's stand-in already runs it on a CPU verdict, mixlab.benchmarks.host_path), and
randperm with a generator, given a Python meta kernel that returns its output as is (an
upper bound: a Python kernel's call costs more than a C++ one). A call that still fails
is reported with the reason, never with a value.

    python -m mixlab.benchmarks.host_meta '{"batches": [...], "number": N, "repeat": R}'

prints {"<entry point>|<B>": [µs per call or null, reason]} as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import timeit

import torch


def measure(batches, number: int, repeat: int) -> dict[tuple[str, int], tuple[float, str]]:
    """(entry point, B) -> (µs per call on meta tensors or NaN, why not measured or "")."""
    args = json.dumps({"batches": list(batches), "number": number, "repeat": repeat})
    done = subprocess.run(
        [sys.executable, "-m", "mixlab.benchmarks.host_meta", args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"host_meta child failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    out = {}
    for key, (us, reason) in result.items():
        name, batch = key.rsplit("|", 1)
        out[name, int(batch)] = (float("nan") if us is None else us, reason)
    return out


def _dispatch_only_meta() -> None:
    """Every op on meta tensors to its C++ meta kernel (see the module docstring)."""
    import torch._meta_registrations as registrations

    registrations._meta_lib_dont_use_me_use_register_meta._destroy()
    global _RANDPERM  # kept alive: a Library's registrations end with it
    _RANDPERM = torch.library.Library("aten", "IMPL", "Meta")
    _RANDPERM.impl("randperm.generator_out", lambda n, *, generator, out: out)


def _run(batches, number: int, repeat: int) -> dict[str, list]:
    from mixlab.benchmarks.host_cost import entry_points
    from mixlab.benchmarks.host_path import cuda_path

    meta = torch.device("meta")
    result = {}
    with cuda_path(meta):
        for batch in batches:
            for name, (_, call) in entry_points(batch, meta).items():
                try:
                    call()  # warm up (imports, caches); what fails here is not measured
                except Exception as error:  # reported in the table, never replaced by a value
                    result[f"{name}|{batch}"] = [None, f"{type(error).__name__}: {error}"[:300]]
                    continue
                runs = timeit.Timer(call).repeat(repeat=repeat, number=number)
                result[f"{name}|{batch}"] = [round(min(runs) / number * 1e6, 1), ""]
    return result


if __name__ == "__main__":
    options = json.loads(sys.argv[1])
    _dispatch_only_meta()
    print(json.dumps(_run(options["batches"], options["number"], options["repeat"])))
