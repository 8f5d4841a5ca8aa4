"""pytest-benchmark entry for the harness-overhead measurement (see ``overhead.py``)."""

from benchmarks.overhead import measure


def test_harness_overhead_vs_hand_loop(benchmark):
    res = benchmark.pedantic(measure, kwargs={"rounds": 4}, rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    assert res["ratio"] >= 0.97, f"harness/hand throughput ratio {res['ratio']:.3f} < 0.97"
