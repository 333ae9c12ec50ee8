#!/usr/bin/env python3
"""Out-of-process fuzzing of idtune's command lines.

Each of tune, sample, eval, fd and langevin starts from a valid, cheap command line; a fixed,
seeded series of mutations is applied (unknown, repeated and value-less flags, missing required
flags, wrong types, out-of-range and huge numbers, empty and 100 000-character strings, paths
that are absent, directories, FIFOs, empty, garbage, too long or lying about their size, --set
with bad keys, deep nesting and huge values). Every command runs under a timeout and must:
  - end by itself (no timeout) and not by a signal (exit status < 128);
  - print no "terminate called", "Exception raised from" or "frame #" (a C++ backtrace);
  - exit 0 for the valid lines, and for the invalid ones exit non-zero with an error line that
    names the flag, the key or the file at fault.

    fuzz_cli.py --idtune build/idtune --source . [--jobs 2] [--timeout 20] [--seed 1]
"""

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

BACKTRACE = ("terminate called", "Exception raised from", "frame #")
HUGE = "x" * 100_000


class Case:
    def __init__(self, label, args, valid, names=()):
        self.label = label
        self.args = args
        self.valid = valid
        self.names = tuple(names)  # an error line must contain one of these


def fixtures(tmp, source):
    """Files every case may name, in `tmp`."""
    f = {"tmp": tmp}
    f["unet"] = os.path.join(source, "models/fashion_unet.pt")
    f["cond"] = os.path.join(source, "models/fashion_cond.pt")
    f["classifier"] = os.path.join(source, "models/fashion_classifier.pt")
    f["hexagon"] = os.path.join(source, "configs/langevin/hexagon.json")
    rng = random.Random(7)
    f["absent"] = os.path.join(tmp, "absent.pt")
    f["dir"] = os.path.join(tmp, "a-directory")
    os.mkdir(f["dir"])
    f["fifo"] = os.path.join(tmp, "a-fifo")
    os.mkfifo(f["fifo"])
    f["empty"] = os.path.join(tmp, "empty.pt")
    open(f["empty"], "wb").close()
    f["garbage"] = os.path.join(tmp, "garbage.bin")
    with open(f["garbage"], "wb") as out:
        out.write(bytes(rng.randrange(256) for _ in range(4096)))
    f["long"] = os.path.join(tmp, "y" * 5000)  # a name the system refuses (ENAMETOOLONG)
    f["card"] = os.path.join(source, "models/fashion_unet.json")  # JSON, not TorchScript
    f["big_json"] = os.path.join(tmp, "big.json")
    with open(f["big_json"], "w") as out:
        out.write("[" + " " * (5 << 20) + "]")
    f["deep_json"] = os.path.join(tmp, "deep.json")
    with open(f["deep_json"], "w") as out:
        out.write("[" * 100_000 + "]" * 100_000)
    f["array_json"] = os.path.join(tmp, "array.json")
    with open(f["array_json"], "w") as out:
        out.write("[1, 2]")
    # A tune config of the shipped model, its run directory here (--check never creates it).
    with open(os.path.join(source, "configs/fashion_brightness.json")) as cfg:
        config = json.load(cfg)
    config["model"] = f["unet"]
    config["output"]["run_dir"] = os.path.join(tmp, "run")
    f["config"] = os.path.join(tmp, "run.json")
    with open(f["config"], "w") as out:
        json.dump(config, out)

    def idx(name, count, rows, cols, pixels):
        path = os.path.join(tmp, name)
        header = (0x803).to_bytes(4, "big") + b"".join(
            d.to_bytes(4, "big") for d in (count, rows, cols))
        with open(path, "wb") as out:
            out.write(header + bytes(rng.randrange(256) for _ in range(pixels)))
        return path

    f["images"] = idx("images.idx", 8, 28, 28, 8 * 28 * 28)
    f["one_image"] = idx("one.idx", 1, 28, 28, 28 * 28)
    f["lying_idx"] = idx("lying.idx", 0xFFFFFFFF, 60000, 60000, 100)  # promises 10^19 bytes
    f["huge_idx"] = idx("huge.idx", 2, 70000, 28, 100)  # rows beyond 65536
    return f


def generate(f, seed):
    """The cases: every mutation family on the command lines it applies to."""
    t = f["tmp"]
    rng = random.Random(seed)
    bases = {
        "tune": ["tune", "--check", "--config", f["config"]],
        "langevin": ["langevin", "--check", "--config", f["hexagon"],
                     "--set", "output.run_dir=" + os.path.join(t, "lrun")],
        "sample": ["sample", "--model", f["unet"], "--n", "1", "--steps", "2",
                   "--out", os.path.join(t, "out.png")],
        "eval": ["eval", "--model", f["unet"], "--n", "2", "--batch", "2", "--steps", "2"],
        "fd": ["fd", "--classifier", f["classifier"], "--a", f["images"], "--b", f["images"],
               "--limit", "4"],
    }
    cases = [Case(f"{name} as is", args, True) for name, args in bases.items()]

    def with_value(base, flag, value):
        """`base` with --flag's value replaced (or the flag added)."""
        args = list(base)
        if "--" + flag in args:
            args[args.index("--" + flag) + 1] = value
        else:
            args += ["--" + flag, value]
        return args

    def show(value):
        return value if len(value) < 40 else value[:20] + f"…({len(value)} chars)"

    # Flags themselves: unknown, value missing, given twice, required one absent.
    for name, base in bases.items():
        cases.append(Case(f"{name} unknown flag", base + ["--fuzz-flag", "1"], False,
                          ["--fuzz-flag"]))
        cases.append(rng.choice([Case(f"{name} stray word", base + ["stray"], False, ["'stray'"]),
                                 Case(f"{name} single dash", base + ["-h2"], False, ["'-h2'"])]))
        value_flags = [a[2:] for i, a in enumerate(base)
                       if a.startswith("--") and i + 1 < len(base) and not base[i + 1].startswith("--")]
        for flag in value_flags:
            if flag == "set":
                continue
            i = base.index("--" + flag)
            rest = base[:i] + base[i + 2:]
            cases.append(Case(f"{name} --{flag} without a value", rest + ["--" + flag], False,
                              ["--" + flag]))
            cases.append(Case(f"{name} --{flag} twice", base + ["--" + flag, base[i + 1]], False,
                              ["--" + flag]))
        for flag in {"tune": ["config"], "langevin": ["config"], "sample": ["model"],
                     "eval": ["model"], "fd": ["classifier", "a", "b"]}[name]:
            i = base.index("--" + flag)
            cases.append(Case(f"{name} without --{flag}", base[:i] + base[i + 2:], False,
                              ["--" + flag]))

    # Numbers: not numbers, not integers, beyond range, non-finite, huge.
    not_numbers = ["abc", "", "nan", "inf", "-inf", "1e400", "0x", "1,5", HUGE]
    not_integers = not_numbers + ["1.5", "99999999999999999999", "-99999999999999999999"]
    integer_flags = [  # command, flag, out-of-range values; with 4 of the non-integers each
        ("sample", "n", ["0", "-1", "5000"]), ("eval", "n", ["1", "-1", "1e7"]),
        ("sample", "steps", ["0", "100001"]), ("eval", "steps", ["-1"]),
        ("sample", "seed", ["-1"]), ("eval", "seed", ["-5"]),
        ("eval", "batch", ["0", "-3"]), ("fd", "limit", ["-2", "0", "1"]),
    ]
    for command, flag, out_of_range in integer_flags:
        for value in rng.sample(not_integers, 2) + out_of_range:
            names = ["--" + flag]
            if flag == "limit" and value in ("0", "1"):  # too few images, the file named
                names.append(f["images"])
            cases.append(Case(f"{command} --{flag} {show(value)}",
                              with_value(bases[command], flag, value), False, names))
    for value in rng.sample(not_numbers, 4) + ["-1", "2.5"]:
        cases.append(Case(f"sample --guidance {show(value)}",
                          with_value(bases["sample"], "guidance", value), False, ["--guidance"]))
    for flag, value in [("range-min", "1"), ("range-min", "5"), ("range-max", "-1"),
                        ("range-min", "nan"), ("range-max", "1e400"), ("range-max", "")]:
        cases.append(Case(f"fd --{flag} {value}", with_value(bases["fd"], flag, value), False,
                          ["--" + flag]))

    # Names: samplers, spacings, devices, dtypes, rewards, class lists.
    for flag, values in [("sampler", ["euler", "", "SDE-EULER", HUGE]),
                         ("spacing", ["cubic", ""]),
                         ("device", ["tpu", "", "cpu:x", "cuda:99", HUGE]),
                         ("dtype", ["float16", "", HUGE])]:
        for command in ["sample"]:  # eval reads them through the same code
            for value in values:
                cases.append(Case(f"{command} --{flag} {show(value)}",
                                  with_value(bases[command], flag, value), False, ["--" + flag]))
    for value in ["", "foo", "brightness +", "nan*brightness", "red",
                  "classifier:" + f["absent"] + ":3", HUGE]:
        cases.append(Case(f"eval --reward {show(value)}", with_value(bases["eval"], "reward", value),
                          False, ["--reward"]))
    for value in ["a,b", "1,,2", ",", "99999999999999999999", "3"]:  # an unconditional model
        cases.append(Case(f"sample --classes {value}", with_value(bases["sample"], "classes", value),
                          False, ["--classes"]))
    cond_sample = with_value(bases["sample"], "model", f["cond"])
    for value in ["-1", "10", "0,10"]:
        cases.append(Case(f"sample (conditional) --classes {value}",
                          with_value(cond_sample, "classes", value), False, ["--classes"]))

    # Paths: absent, a directory, a FIFO, empty, garbage, too long, the wrong kind of file.
    bad_paths = {"absent": f["absent"], "directory": f["dir"], "fifo": f["fifo"],
                 "empty file": f["empty"], "garbage": f["garbage"], "too long": f["long"]}
    for (command, flag) in [("sample", "model"), ("eval", "model"), ("eval", "reference"),
                            ("eval", "classifier"), ("fd", "classifier"), ("fd", "a"), ("fd", "b")]:
        for kind in rng.sample(sorted(bad_paths), 3):
            path = bad_paths[kind]
            names = [path if len(path) < 1000 else path[:200]]
            cases.append(Case(f"{command} --{flag} {kind}", with_value(bases[command], flag, path),
                              False, names))
    cases.append(Case("sample --model a card", with_value(bases["sample"], "model", f["card"]),
                      False, [f["card"]]))
    cases.append(Case("sample --model ''", with_value(bases["sample"], "model", ""), False,
                      ["''"]))
    for kind, path in [("one image", f["one_image"]), ("header lying about its size", f["lying_idx"]),
                       ("images beyond 65536 rows", f["huge_idx"])]:
        cases.append(Case(f"fd --a {kind}", with_value(bases["fd"], "a", path), False, [path]))
    eval_data = bases["eval"] + ["--classifier", f["classifier"]]
    for kind, path in [("absent", f["absent"]), ("fifo", f["fifo"]), ("garbage", f["garbage"]),
                       ("one image", f["one_image"]), ("lying", f["lying_idx"])]:
        cases.append(Case(f"eval --data {kind}", eval_data + ["--data", path], False, [path]))
    for kind, path in [("directory", f["dir"]), ("fifo", f["fifo"]), ("too long", f["long"]),
                       ("in no folder", os.path.join(t, "none", "x.png")), ("empty", "")]:
        names = [path[:200]] if path else ["''", "--out", "not a file path"]
        cases.append(Case(f"sample --out {kind}", with_value(bases["sample"], "out", path), False,
                          names))
    config_paths = dict(bad_paths, **{"4 MiB+": f["big_json"], "nested 100000 deep": f["deep_json"],
                                      "an array": f["array_json"], "a model card": f["card"]})
    for command, count in [("tune", len(config_paths)), ("langevin", 5)]:
        for kind in rng.sample(sorted(config_paths), count):
            path = config_paths[kind]
            cases.append(Case(f"{command} --config {kind}",
                              with_value(bases[command], "config", path), False,
                              [path if len(path) < 1000 else path[:200]]))

    # --set: malformed, unknown, wrong types, deep, huge; the key (or --set) must be named.
    deep = "[" * 1000 + "1" + "]" * 1000
    set_cases = [
        ("a", ["--set 'a'"]), ("=1", ["--set '=1'"]), ("sampler..steps=1", ["empty key"]),
        ("sampler.steps=" + deep, ["--set", "nested deeper"]),
        ("sampler.steps=" + "[" * 100_000, ["/sampler/steps"]),  # not JSON: a string
        ("iterations=" + "9" * 100_000, ["/iterations"]), ("reward=" + HUGE, ["/reward"]),
        ("output=5", ["/output"]), ("model.path=x", ["/model"]), ("fuzz=1", ["/fuzz"]),
        ("sampler.steps=1e400", ["/sampler/steps"]), ("sampler.steps=-1", ["/sampler/steps"]),
        ("sampler.kind=euler", ["/sampler/kind"]), ("batch=2.5", ["/batch"]),
        ("seed=-1", ["/seed"]), ("iterations=null", ["/iterations"]),
        ("output.run_dir=", ["/output/run_dir"]), ("output.run_dir=" + f["fifo"], ["/output/run_dir"]),
        ("output.run_dir=" + f["long"], ["/output/run_dir"]), ("model=" + f["dir"], ["/model"]),
        ("sampler={\"steps\": 1, \"steps\": 2}", ["duplicate key"]),
        ("a" + ".a" * 40 + "=1", ["nests deeper"]),
        ('objective={"lambda": 0, "beta": 0}', ["nothing to optimise"]),
    ]
    for assignment, names in set_cases:
        cases.append(Case(f"tune --set {show(assignment)}",
                          bases["tune"] + ["--set", assignment], False, names))
    for assignment, names in [("sampler.particles=1e9", ["/sampler/particles"]),
                              ("sampler.particles=0", ["/sampler/particles"]),
                              ("potential.means=[]", ["/potential/means"]),
                              ("steps=" + deep, ["nested deeper"]),
                              ("reward.center=[1,2,3]", ["/reward"])]:
        cases.append(Case(f"langevin --set {show(assignment)}",
                          bases["langevin"] + ["--set", assignment], False, names))

    # A few more valid lines: mutations that keep the input valid must be accepted.
    cases += [
        Case("tune --set sampler.steps=16", bases["tune"] + ["--set", "sampler.steps=16"], True),
        Case("tune --set reward as a string", bases["tune"] + ["--set", "reward=brightness"], True),
        Case("sample --seed max", with_value(bases["sample"], "seed", "9223372036854775807"), True),
        Case("sample ddim", with_value(bases["sample"], "sampler", "ddim"), True),
        Case("eval --reward weighted", with_value(bases["eval"], "reward", "0.5*brightness"), True),
        Case("fd --limit -1", with_value(bases["fd"], "limit", "-1"), True),
    ]
    rng.shuffle(cases)  # interleave the slow and the fast
    return cases


def run_case(idtune, case, timeout):
    """Runs one case; returns a list of problems (empty when it passed)."""
    start = time.monotonic()
    try:
        done = subprocess.run([idtune] + case.args, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              env=dict(os.environ, IDTUNE_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return [f"no exit within {timeout} s"], timeout
    seconds = time.monotonic() - start
    output = done.stdout.decode("utf-8", "replace")
    problems = []
    if done.returncode < 0 or done.returncode >= 128:
        problems.append(f"ended by a signal (status {done.returncode})")
    for trace in BACKTRACE:
        if trace in output:
            problems.append(f"'{trace}' in the output")
    errors = [line for line in output.splitlines() if "[error]" in line]
    if case.valid:
        if done.returncode != 0:
            problems.append(f"a valid line exited {done.returncode}")
    else:
        if done.returncode == 0:
            problems.append("an invalid line exited 0")
        elif not errors:
            problems.append("no error line")
        elif not any(name in errors[0] for name in case.names):
            problems.append("the error names none of " + ", ".join(repr(n[:60]) for n in case.names))
    if problems:
        problems.append("output: " + output[-600:].replace("\n", " | "))
    return problems, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idtune", required=True)
    parser.add_argument("--source", required=True, help="the repository root")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="idtune-fuzz-cli-")
    try:
        f = fixtures(tmp, os.path.abspath(args.source))
        cases = generate(f, args.seed)
        failures = 0
        slowest = (0.0, "")
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = pool.map(lambda c: (c, run_case(args.idtune, c, args.timeout)), cases)
            for case, (problems, seconds) in results:
                slowest = max(slowest, (seconds, case.label))
                if problems:
                    failures += 1
                    print(f"FAIL {case.label}: " + "; ".join(problems), flush=True)
        for leftover in ("run", "lrun"):  # --check writes nothing
            if os.path.exists(os.path.join(tmp, leftover)):
                failures += 1
                print(f"FAIL --check created {leftover}/")
        valid = sum(c.valid for c in cases)
        print(f"fuzz_cli: {len(cases)} command lines ({valid} valid, {len(cases) - valid} invalid), "
              f"{failures} failed, in {time.monotonic() - start:.1f} s; slowest {slowest[0]:.1f} s "
              f"({slowest[1]})")
        return 1 if failures else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
