"""Multi-rank traces (docs/trace.md, "Multi-rank traces"; docs/replay.md, "Several ranks"): real
distributed recordings (tests/record/dist_child.py: gloo on CPU, torch.multiprocessing.spawn),
the reader's checks of the new attributes, and `replay` of several rank traces as one run,
through Python and the CLI."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import fpscope

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "record" / "dist_child.py"
BIN = os.environ.get("FPSCOPE_BIN")
SPIKE = 3  # dist_child --spike: the loss times 2^20 at this step


def record(out, kind, world, single=None, steps=6):
    args = [sys.executable, str(CHILD), "--kind", kind, "--world", str(world), "--out", str(out),
            "--steps", str(steps), "--spike", str(SPIKE)]
    if single:
        args += ["--single", str(single)]
    subprocess.run(args, check=True, timeout=240)
    return [out / f"rank{r}.h5" for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    return {"ddp": record(d / "ddp", "ddp", 2), "zero": record(d / "zero", "zero", 3),
            "tp": record(d / "tp", "tp", 2, single=d / "tp" / "single.h5"), "single": d / "tp" / "single.h5"}


def copies(tmp_path, files):
    out = []
    for f in files:
        shutil.copy(f, tmp_path / f.name)
        out.append(tmp_path / f.name)
    return out


def same_run(a, b):
    """The parts of two replay results that say what the run did (not where it was read from)."""
    keep = lambda s: {k: v for k, v in s.items() if k not in ("world_size", "amax_group", "overflow_sources",  # noqa: E731
                                                             "steps_left_out")}
    return a["steps"] == b["steps"] and keep(a["summary"]) == keep(b["summary"]) and a["policy"] == b["policy"]


# ---- recording -----------------------------------------------------------------------------------

def test_each_rank_records_its_rank_and_layout_from_torch_distributed(runs):
    for kind, axis in (("ddp", "dp"), ("zero", "dp"), ("tp", "tp")):
        files = runs[kind]
        for r, f in enumerate(files):
            t = fpscope.Trace(str(f))
            assert t.layout == {"rank": r, "world_size": len(files), axis: (r, len(files))}, (kind, t.layout)
            assert len(t) == 6 and not t.incomplete
    assert fpscope.Trace(str(runs["single"])).layout is None


def test_every_rank_file_passes_the_independent_format_check(runs):
    sys.path.insert(0, str(ROOT / "tests" / "record"))
    import tracecheck

    shards = set()
    for kind in ("ddp", "zero", "tp"):
        for f in runs[kind]:
            with h5py.File(f, "r") as h:
                for _, tensors in tracecheck.check_trace(h).values():
                    shards |= {t[1].get("shard", ("whole",))[0] for t in tensors}
    assert shards == {"whole", "flat", "split"}


def test_ddp_ranks_hold_identical_replicas(runs):
    a, b = (fpscope.Trace(str(f)) for f in runs["ddp"])
    names = [t["name"] for t in a.step(0)["tensors"]]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for i in range(len(a)):
        for n in names:
            assert a.step(i)["tensors"][names.index(n)]["shard"] is None
            assert np.array_equal(a.values(i, n), b.values(i, n))  # all-reduced: the same bits on every rank


def test_zero_flat_shards_tile_each_gradient_and_match_ddp(runs):
    ts = [fpscope.Trace(str(f)) for f in runs["zero"]]
    ddp = fpscope.Trace(str(runs["ddp"][0]))  # the same model: the same shapes
    for i in (0, 5):
        whole = {t["name"]: t for t in ddp.step(i)["tensors"]}
        pieces = {}
        for t in ts:
            for x in t.step(i)["tensors"]:
                sh = x["shard"]
                assert set(sh) == {"logical_name", "logical_shape", "offset"} and sh["logical_name"] == x["name"]
                assert sh["logical_shape"] == whole[x["name"]]["shape"]
                pieces.setdefault(x["name"], []).append((sh["offset"], t.values(i, x["name"]).reshape(-1)))
        assert sum(len(p) for p in pieces.values()) > 4  # some tensor is split between ranks
        for n, p in pieces.items():
            p.sort(key=lambda q: q[0])
            at = 0
            for off, v in p:
                assert off == at
                at += v.size
            assert at == whole[n]["count"]
            if i == 0:  # the mean of the ranks' gradients, computed here: float32 rounding apart
                np.testing.assert_allclose(np.concatenate([v for _, v in p]), mean_grads(3)[n], rtol=1e-5, atol=1e-7)


def mean_grads(world):
    """Step 0's gradients of dist_child's MLP averaged over `world` ranks' batches, in one process."""
    import torch

    sys.path.insert(0, str(CHILD.parent))
    import dist_child

    total = {}
    for r in range(world):
        model = dist_child.mlp()
        x, y = dist_child.batch(r, 0)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for n, p in zip(dist_child.names(model), model.parameters()):
            total[n] = total.get(n, 0) + p.grad.double()
    return {n: (g / world).float().numpy().reshape(-1) for n, g in total.items()}


def test_tp_split_shards_assemble_the_single_process_gradient(runs):
    ts = [fpscope.Trace(str(f)) for f in runs["tp"]]
    single = fpscope.Trace(str(runs["single"]))
    for i in range(len(single)):
        for n in ("fc.weight", "fc.bias"):
            parts = []
            for r, t in enumerate(ts):
                x = next(x for x in t.step(i)["tensors"] if x["name"] == n)
                assert x["shard"] == {"logical_name": n, "logical_shape": single.step(i)["tensors"][0 if n == "fc.weight" else 1]["shape"],
                                      "dim": 0, "index": r, "parts": 2}
                parts.append(t.values(i, n))
            np.testing.assert_array_equal(np.concatenate(parts), single.values(i, n))


def test_recorder_rank_arguments_are_checked(tmp_path):
    from fpscope.record import Recorder, flat_shard, split_shard

    bad = [dict(rank=1), dict(world_size=2), dict(rank=2, world_size=2), dict(rank=0, world_size=0),
           dict(rank=0, world_size=2, layout={"dp": (0, 3)}), dict(rank=0, world_size=4, layout={"dp": (0, 2), "tp": (0, 3)}),
           dict(rank=0, world_size=2, layout={"ep": (0, 2)}), dict(layout={"dp": (0, 2)}),
           dict(shards={"w": {"logical_name": "w"}}), dict(shards={"w": flat_shard("w", (4,), 0) | {"dim": 0}})]
    for kw in bad:
        with pytest.raises(ValueError):
            Recorder(tmp_path / "x.h5", "m", **kw)
    for args in [("", (4,), 0), ("w", (4,), -1)]:
        with pytest.raises(ValueError):
            flat_shard(*args)
    for args in [("w", (4, 2), 2, 0, 2), ("w", (4, 2), 0, 2, 2), ("w", (3, 2), 0, 0, 2), ("w", (4,), 0, 0, 0)]:
        with pytest.raises(ValueError):
            split_shard(*args)
    with Recorder(tmp_path / "r.h5", "m", rank=1, world_size=2, layout={"tp": (1, 2)}, background=False,
                  shards={"w": split_shard("w", (4, 2), 0, 1, 2)}) as rec:
        with pytest.raises(ValueError, match="not part 1 of 2"):
            rec.record(0, {"w": np.ones((4, 2), np.float32)})
        with pytest.raises(ValueError, match="outside"):
            rec.record(0, {"v": np.ones(3, np.float32)}, shards={"v": flat_shard("v", (4,), 2)})
        rec.record(0, {"w": np.ones((2, 2), np.float32), "v": np.ones(2, np.float32)}, shards={"v": flat_shard("v", (4,), 2)})
    t = fpscope.Trace(str(tmp_path / "r.h5"))
    assert t.layout == {"rank": 1, "world_size": 2, "tp": (1, 2)}
    assert [x["shard"] for x in t.step(0)["tensors"]] == [
        {"logical_name": "w", "logical_shape": (4, 2), "dim": 0, "index": 1, "parts": 2},
        {"logical_name": "v", "logical_shape": (4,), "offset": 2}]


# ---- the reader's checks (hostile attributes) ----------------------------------------------------

ROOT_BAD = [({"rank": 2}, "@rank 2 is not in 0..1"), ({"world_size": 0}, "@world_size 0"),
            ({"world_size": 1 << 30}, "@world_size"), ({"rank": -1}, "@rank -1"),
            ({"dp_size": 3}, "do not divide"), ({"dp_rank": 3}, "@dp_rank 3"), ({"tp_size": None}, "come together"),
            ({"fpscope_trace_minor": -1}, "not a version"), ({"rank": 1.5}, "not an integer")]
TENSOR_BAD = [({"shard_length": 7}, "is not the tensor's count"), ({"shard_offset": 1 << 20}, "outside"),
              ({"split_dim": 0}, "either"), ({"logical_name": None}, "both @logical_name"),
              ({"logical_shape": np.array([3], np.int64)}, "outside"), ({"logical_shape": np.array([-4, 8], np.int64)}, "negative"),
              ({"logical_shape": np.full(40, 2, np.int64)}, "absurd rank"),
              ({"logical_shape": np.array([1 << 30, 1 << 30], np.int64)}, "absurdly large")]
SPLIT_BAD = [({"split_index": 2}, "@split_index 2"), ({"split_count": 3}, "does not divide"),
             ({"split_count": 0}, "@split_count 0"), ({"split_dim": 5}, "not a dimension"),
             ({"split_count": 1}, "@split_index 1 is not in 0..0"), ({"shard_offset": 0}, "either")]


def edit(path, attrs, where="/"):
    with h5py.File(path, "r+") as f:
        for k, v in attrs.items():
            if v is None:
                del f[where].attrs[k]
            else:
                f[where].attrs[k] = v


@pytest.mark.parametrize("attrs,words", ROOT_BAD, ids=[str(a) for a, _ in ROOT_BAD])
def test_reader_refuses_a_bad_layout(runs, tmp_path, attrs, words):
    f = copies(tmp_path, runs["zero"][1:2])[0] if "dp_rank" in attrs or "dp_size" in attrs else copies(tmp_path, runs["tp"][1:])[0]
    if "dp_size" in attrs:  # zero has world 3: dp_size 3 is right, 2 is not
        attrs = {"dp_size": 2}
    edit(f, attrs)
    with pytest.raises(ValueError) as e:
        fpscope.Trace(str(f))
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("attrs,words", TENSOR_BAD + SPLIT_BAD, ids=[str(a)[:40] for a, _ in TENSOR_BAD + SPLIT_BAD])
def test_reader_refuses_a_bad_shard(runs, tmp_path, attrs, words):
    split = (attrs, words) in SPLIT_BAD or "logical_shape" in attrs and len(attrs["logical_shape"]) != 1
    f = copies(tmp_path, runs["tp"][1:] if split else runs["zero"][1:2])[0]
    name = "fc.weight" if split else "fc1.weight"  # zero's rank 1 holds fc1.weight[270:512]
    edit(f, attrs, f"steps/00000002/tensors/{name}")
    t = fpscope.Trace(str(f))
    t.step(1)  # the other steps are untouched
    with pytest.raises(ValueError) as e:
        t.step(2)
    assert words in str(e.value) and "step 00000002, tensor " + name in str(e.value), str(e.value)


def test_traces_without_the_new_attributes_still_read():
    t = fpscope.Trace(str(ROOT / "datasets" / "traces" / "digits-mlp.h5"))
    assert t.layout is None and all(x["shard"] is None for x in t.step(0)["tensors"])


# ---- replaying several ranks as one run ----------------------------------------------------------

@pytest.mark.parametrize("policy", ["torch", "te-delayed", "te-current", "mx"])
def test_ddp_replays_as_any_one_of_its_ranks(runs, policy):
    one = fpscope.replay(runs["ddp"][0], policy)
    both = fpscope.replay(runs["ddp"], policy)
    assert both["summary"]["world_size"] == 2 and both["summary"]["steps"] == 6
    assert same_run(one, both)
    if policy == "torch":
        assert both["summary"]["skipped"] == [SPIKE]
        # every rank's replica overflowed at the spike: each is named
        assert {k.split(",")[0] for k in both["summary"]["overflow_sources"]} == {"rank 0", "rank 1"}


# Not mx: its 32-element blocks of the flattened tensor cut a 16-element bias shard otherwise
# than the whole bias (each rank quantizes its own shard, as the real run would).
@pytest.mark.parametrize("policy", ["torch", "te-delayed:amax_history_len=4", "te-current"])
def test_tp_replays_as_the_single_process_run(runs, policy):
    assert same_run(fpscope.replay(runs["single"], policy), fpscope.replay(runs["tp"], policy, amax_group="tensor"))


def test_the_amax_group_changes_fp8_scales(runs):
    whole = fpscope.replay(runs["tp"], "te-current")
    alone = fpscope.replay(runs["tp"], "te-current", amax_group="rank")
    tp = fpscope.replay(runs["tp"], "te-current", amax_group="tp")
    assert tp["steps"] == whole["steps"]  # one tensor-parallel group of two ranks: the whole tensor
    assert alone["summary"]["amax_group"] == "rank"
    # each rank's half scaled by its own amax: the scales differ from the whole tensor's
    assert [s["scale"] for s in alone["steps"]] != [s["scale"] for s in whole["steps"]]
    with pytest.raises(ValueError, match="tensor-parallel layout"):
        fpscope.replay(runs["zero"], "te-current", amax_group="tp")


def test_zero_replay_attributes_overflows_to_ranks_and_shards(runs):
    r = fpscope.replay(runs["zero"], "torch")
    assert r["summary"]["skipped"] == [SPIKE]
    src = r["summary"]["overflow_sources"]
    assert src and all(v == 1 for v in src.values())
    assert "rank 1, fc1.weight shard 1" in src and "rank 0, fc1.weight shard 0" in src, src
    # the shards' counts add up to the DDP run's (the same gradients up to rounding): every value counted once
    ddp = fpscope.replay(runs["ddp"], "torch")
    assert r["summary"]["total"] == ddp["summary"]["total"]


def test_missing_duplicated_and_overlapping_shards_are_errors(runs, tmp_path):
    cases = []
    (tmp_path / "dup").mkdir()
    a = copies(tmp_path / "dup", runs["tp"])
    edit(a[1], {"split_index": 0}, "steps/00000004/tensors/fc.weight")
    cases.append((a, "step 4, tensor fc.weight: ranks 0 and 1 both hold part 0 of 2 along dimension 0: a duplicated shard"))
    (tmp_path / "miss").mkdir()
    b = copies(tmp_path / "miss", runs["tp"])
    edit(b[1], {"logical_name": np.array(b"fc.w2", dtype=h5py.string_dtype("utf-8", 5))}, "steps/00000001/tensors/fc.weight")
    cases.append((b, "step 1, tensor fc.weight: part 1 of 2 along dimension 0 are in no rank's trace: a missing shard"))
    (tmp_path / "over").mkdir()
    c = copies(tmp_path / "over", runs["zero"])
    with h5py.File(c[1], "r") as f:
        off = int(f["steps/00000000/tensors/fc1.weight"].attrs["shard_offset"])
    edit(c[1], {"shard_offset": off - 1}, "steps/00000000/tensors/fc1.weight")
    cases.append((c, "overlap rank 0's"))
    for files, words in cases:
        with pytest.raises(ValueError) as e:
            fpscope.replay(files, "torch")
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
        p = subprocess.run([BIN, "replay", "-q", *map(str, files)], capture_output=True, text=True)
        assert p.returncode == 1 and p.stdout == "" and words in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_ranks_must_be_one_whole_run(runs, tmp_path):
    with pytest.raises(ValueError, match=r"ranks 2 of world size 3 have no trace"):
        fpscope.replay(runs["zero"][:2], "torch")
    with pytest.raises(ValueError, match="rank 0 is also"):
        fpscope.replay([runs["tp"][0], runs["tp"][0]], "torch")
    with pytest.raises(ValueError, match="@world_size 3 differs"):
        fpscope.replay([runs["tp"][0], runs["zero"][1]], "torch")
    with pytest.raises(ValueError, match="no @rank/@world_size"):
        fpscope.replay([runs["tp"][0], runs["single"]], "torch")
    with pytest.raises(ValueError, match="needs several rank traces"):
        fpscope.replay(runs["tp"][0], "torch", amax_group="rank")


def test_steps_a_rank_lacks_are_left_out_and_reported(runs, tmp_path):
    files = copies(tmp_path, runs["ddp"])
    with h5py.File(files[1], "r+") as f:
        del f["steps/00000001"]              # a rank with another step set
        del f["steps/00000005"].attrs["complete"]  # a rank killed while writing its last step
    r = fpscope.replay(files, "torch")
    assert [s["step"] for s in r["steps"]] == [0, 2, 3, 4]
    assert r["summary"]["steps_left_out"] == [f"rank 1 ({files[1]}) did not record steps 1, 5 that other ranks did: left out"]
    assert len(r["summary"]["incomplete_steps"]) == 1 and "00000005" in r["summary"]["incomplete_steps"][0]
    # the steps every rank completed replay as before
    full = fpscope.replay(runs["ddp"], "torch")
    assert [s for s in full["steps"] if s["step"] in (0, 2)] == [s for s in r["steps"] if s["step"] in (0, 2)]
    out = subprocess.run([BIN, "replay", "-q", *map(str, files)], capture_output=True, text=True, check=True).stdout
    assert "note: rank 1" in out and "did not record steps 1, 5" in out and "2 ranks replayed as one run" in out


def test_cli_reports_the_run_and_where_overflows_came_from(runs):
    out = subprocess.run([BIN, "replay", "-q", *map(str, runs["zero"])], capture_output=True, text=True, check=True).stdout
    assert "3 ranks replayed as one run; FP8 amax reduced over: tensor" in out
    assert "where overflows came from" in out and "rank 2, fc2.weight shard 0" in out, out
    j = json.loads(subprocess.run([BIN, "replay", "-q", "--json", *map(str, runs["zero"])], capture_output=True, text=True,
                                  check=True).stdout)
    assert j["summary"]["world_size"] == 3 and j["summary"]["skipped"] == [SPIKE]
    p = subprocess.run([BIN, "replay", "-q", "--amax-group", "rank", str(runs["zero"][0])], capture_output=True, text=True)
    assert p.returncode == 2 and "--amax-group" in p.stderr and p.stderr.count("\n") == 1
    p = subprocess.run([BIN, "replay", "-q", "--amax-group", "bogus", *map(str, runs["zero"])], capture_output=True, text=True)
    assert p.returncode == 2 and "not an amax group" in p.stderr and p.stderr.count("\n") == 1


# ---- trace merge ---------------------------------------------------------------------------------

def merge(files, out, *extra):
    return subprocess.run([BIN, "trace", "merge", "-q", *map(str, files), "-o", str(out), *extra], capture_output=True,
                          text=True)


@pytest.mark.parametrize("kind,policies", [("ddp", ["torch", "te-delayed", "te-current", "mx"]),
                                           ("zero", ["torch", "te-delayed", "te-current"]),
                                           ("tp", ["torch", "te-delayed", "te-current"])])
def test_a_merged_trace_replays_as_its_ranks_together(runs, tmp_path, kind, policies):
    out = tmp_path / "run.h5"
    p = merge(runs[kind], out)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == f"{out}: 6 steps of {len(runs[kind])} ranks merged\n"
    for policy in policies:
        assert same_run(fpscope.replay(out, policy), fpscope.replay(runs[kind], policy)), policy
    h = tmp_path / "hist.h5"
    assert merge(runs[kind], h, "--histograms").returncode == 0
    t = fpscope.Trace(str(h))
    assert all(x["has_hist"] and not x["has_values"] for x in t.step(0)["tensors"])
    # a histogram gives exactly the counts the values give at power-of-two scales (docs/hist.md)
    for policy in ("torch", "te-current:pow2"):
        assert same_run(fpscope.replay(h, policy), fpscope.replay(runs[kind], policy)), policy


def test_merge_places_shards_where_they_belong(tmp_path):
    """Shards cut from known arrays by hand (flat, and splits along dimensions 0, 1 and 2) merge
    back to exactly those arrays; the arrays themselves are the oracle."""
    from fpscope.record import Recorder, flat_shard, split_shard

    rng = np.random.default_rng(0)
    full = {"a": rng.standard_normal((4, 6, 5)).astype(np.float32), "b": rng.standard_normal(10).astype(np.float32),
            "c": rng.standard_normal((3, 4)).astype(np.float32), "d": rng.standard_normal((2, 9)).astype(np.float32)}
    world = 3
    for r in range(world):
        with Recorder(tmp_path / f"rank{r}.h5", "hand-cut shards", rank=r, world_size=world, background=False,
                      mode="both") as rec:
            for step in (0, 1):
                grads, shards = {}, {}
                grads["a"] = np.array_split(full["a"] * (step + 1), world, axis=1)[r]  # 6 / 3 along dim 1
                shards["a"] = split_shard("a", (4, 6, 5), 1, r, world)
                cut = [0, 3, 4, 10]  # uneven flat shards, one of a single element
                grads["b"] = full["b"][cut[r]:cut[r + 1]] * (step + 1)
                shards["b"] = flat_shard("b", (10,), cut[r])
                grads["c"] = full["c"] * (step + 1)  # a replica on every rank
                grads["d"] = np.split(full["d"] * (step + 1), world, axis=1)[r]
                shards["d"] = split_shard("d", (2, 9), 1, r, world)
                rec.record(step, grads, shards=shards)
    files = [tmp_path / f"rank{r}.h5" for r in range(world)]
    assert merge(files, tmp_path / "m.h5").returncode == 0
    t = fpscope.Trace(str(tmp_path / "m.h5"))
    assert [x["name"] for x in t.step(0)["tensors"]] == ["a", "b", "c", "d"]
    for i in (0, 1):
        for n, v in full.items():
            np.testing.assert_array_equal(t.values(i, n), v * (i + 1))
            x = next(x for x in t.step(i)["tensors"] if x["name"] == n)
            assert x["shape"] == v.shape and x["shard"] is None
            keys, counts = t.histogram(i, n)
            ref = fpscope.bucket_histogram(v * (i + 1))
            assert np.array_equal(keys, ref[0]) and np.array_equal(counts, ref[1])
    # and the histogram-only merge adds the shards' histograms to the same
    assert merge(files, tmp_path / "h.h5", "--histograms").returncode == 0
    h = fpscope.Trace(str(tmp_path / "h.h5"))
    for n, v in full.items():
        keys, counts = h.histogram(1, n)
        ref = fpscope.bucket_histogram(v * 2)
        assert np.array_equal(keys, ref[0]) and np.array_equal(counts, ref[1])
        x = next(x for x in h.step(1)["tensors"] if x["name"] == n)
        assert x["amax"] == float(np.abs(v * 2).max()) and x["count"] == v.size


def test_merge_refuses_what_replay_refuses_and_writes_nothing(runs, tmp_path):
    (tmp_path / "dup").mkdir()
    files = copies(tmp_path / "dup", runs["tp"])
    edit(files[1], {"split_index": 0}, "steps/00000004/tensors/fc.weight")
    out = tmp_path / "m.h5"
    p = merge(files, out)
    assert p.returncode == 1 and "a duplicated shard" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert not out.exists()
    p = merge(runs["zero"][:2], out)
    assert p.returncode == 1 and "have no trace" in p.stderr and not out.exists()
    p = merge(runs["zero"], runs["zero"][0])
    assert p.returncode == 1 and "is the input file" in p.stderr
    p = merge(runs["zero"][:1], out)
    assert p.returncode == 2 and "several ranks" in p.stderr


def test_an_overflow_on_one_rank_alone_skips_the_step_and_is_attributed(tmp_path):
    """found_inf is the OR over ranks: a value only rank 1 holds (its flat shard; its copy of a
    replica that the ranks disagree on) overflows fp16 under the initial 2^16 scale."""
    from fpscope.record import Recorder, flat_shard

    for r in range(2):
        with Recorder(tmp_path / f"rank{r}.h5", "one rank overflows", rank=r, world_size=2, background=False) as rec:
            for step in range(4):
                w = np.full(4, 1e-3, np.float32)
                if r == 1 and step == 1:
                    w[2] = 1e6  # 1e6 * 2^16 > 65504
                rep = np.full(3, 1e-3, np.float32)
                if r == 1 and step == 2:
                    rep[0] = np.inf
                rec.record(step, {"w": w, "rep": rep}, shards={"w": flat_shard("w", (8,), 4 * r)})
    r = fpscope.replay([tmp_path / "rank0.h5", tmp_path / "rank1.h5"], "torch")
    assert r["summary"]["skipped"] == [1, 2]
    assert r["summary"]["overflow_sources"] == {"rank 1, w shard 1": 1, "rank 1, rep": 1}
    assert r["summary"]["skip_causes"] == {"w": 1}  # the replica counted is rank 0's, which is finite


def test_python_merge_is_the_cli_merge(runs, tmp_path):
    m = fpscope.merge(runs["zero"], tmp_path / "py.h5")
    assert m == {"world_size": 3, "steps": 6, "incomplete": [], "left_out": []}
    assert merge(runs["zero"], tmp_path / "cli.h5").returncode == 0
    a, b = fpscope.Trace(str(tmp_path / "py.h5")), fpscope.Trace(str(tmp_path / "cli.h5"))
    for i in range(6):
        assert a.step(i) == b.step(i)
        for x in a.step(i)["tensors"]:
            assert np.array_equal(a.values(i, x["name"]), b.values(i, x["name"]))
    with pytest.raises(ValueError, match="several ranks"):
        fpscope.merge(runs["zero"][0], tmp_path / "x.h5")
    with pytest.raises(ValueError, match="have no trace"):
        fpscope.merge(runs["zero"][:2], tmp_path / "x.h5")
    with pytest.raises(OSError, match="is the input file"):
        fpscope.merge(runs["zero"], runs["zero"][0])
    assert not (tmp_path / "x.h5").exists()


def test_cli_mpi_flag_without_mpirun(runs):
    """--mpi with or without MPI in the build: a usage error that says so, or (MPI's singleton
    mode, one process) the one-process replay. tests/cli/test_mpi.py runs it under mpirun."""
    one = subprocess.run([BIN, "replay", "-q", *map(str, runs["tp"])], capture_output=True, text=True, check=True).stdout
    env = {**os.environ, "OMPI_MCA_mca_base_component_show_load_errors": "0"}
    p = subprocess.run([BIN, "replay", "--mpi", "-q", *map(str, runs["tp"])], capture_output=True, text=True, env=env,
                       timeout=120)
    if "built without MPI" in p.stderr:
        assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1
    else:
        assert p.returncode == 0 and p.stdout == one, p.stderr
    p = subprocess.run([BIN, "replay", "--mpi", "-q", str(runs["tp"][0])], capture_output=True, text=True)
    assert p.returncode == 2 and "--mpi: needs several rank traces" in p.stderr


# ---- fpscope.Trace over a run's rank traces -------------------------------------------------------

def same_trace(a, b):
    """Every step's metadata, values and histograms of two Traces, compared; how many tensors."""
    assert len(a) == len(b) > 0
    seen = 0
    for i in range(len(b)):
        # (as JSON text: a NaN loss, which the TP run records, then compares equal to itself)
        assert json.dumps(a.step(i), sort_keys=True) == json.dumps(b.step(i), sort_keys=True)
        for x in b.step(i)["tensors"]:
            if x["has_values"]:
                np.testing.assert_array_equal(a.values(i, x["name"]), b.values(i, x["name"]))
            if x["has_hist"]:
                for p, q in zip(a.histogram(i, x["name"]), b.histogram(i, x["name"])):
                    np.testing.assert_array_equal(p, q)
            seen += 1
    return seen


@pytest.mark.parametrize("kind", ["ddp", "zero", "tp"])
def test_trace_of_rank_files_reads_as_the_merged_trace(runs, tmp_path, kind):
    files = [str(f) for f in runs[kind]]
    fpscope.merge(files, tmp_path / "run.h5")
    merged = fpscope.Trace(str(tmp_path / "run.h5"))
    run = fpscope.Trace(files)
    assert same_trace(run, merged) > 0
    assert run.incomplete == [] and run.path.startswith(files[0])
    # the logical tensors: the TP split assembles to the single-process gradient
    if kind == "tp":
        single = fpscope.Trace(str(runs["single"]))
        for i in range(len(single)):
            for x in single.step(i)["tensors"]:
                np.testing.assert_array_equal(run.values(i, x["name"]), single.values(i, x["name"]))
    hist = fpscope.Trace(files, histograms=True)
    assert all(not x["has_values"] and x["has_hist"] for x in hist.step(0)["tensors"])
    with pytest.raises(ValueError, match="has no raw values"):
        hist.values(0, hist.step(0)["tensors"][0]["name"])


def test_trace_of_rank_files_reports_left_out_steps_and_refuses_bad_runs(runs, tmp_path):
    files = copies(tmp_path, runs["ddp"])
    with h5py.File(files[1], "r+") as f:
        del f["steps/00000001"]
    run = fpscope.Trace([str(f) for f in files])
    assert [run.step(i)["step"] for i in range(len(run))] == [0, 2, 3, 4, 5]
    assert run.incomplete == [f"rank 1 ({files[1]}) did not record step 1 that other ranks did: left out"]
    with pytest.raises(ValueError, match=r"ranks 2 of world size 3 have no trace"):
        fpscope.Trace([str(f) for f in runs["zero"][:2]])
    with pytest.raises(ValueError, match="several ranks"):
        fpscope.Trace([str(runs["ddp"][0])])
    with pytest.raises(ValueError, match="integer in \\[0, 1024\\]|thread count"):
        fpscope.Trace([str(f) for f in runs["ddp"]], threads=-1)
