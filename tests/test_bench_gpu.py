"""The accelerator benchmark's --dry-run: the full-size programs compile on CPU (nothing runs)."""

from benchmarks import bench_gpu


def test_dry_run_compiles_the_full_size_programs(capsys):
    report = bench_gpu.main(["--dry-run"])  # 36,497 queries, 8 seeds x 64 lanes: compile only
    for phase in ("predictor", "policy"):
        assert report[f"{phase}_chunk_compile_s"] > 0.0
        assert report[f"{phase}_chunk_memory"].get("temp_size_in_bytes", 1.0) > 0.0
    assert report["route_compile_s"] > 0.0
    out = capsys.readouterr().out
    assert "8 seeds x 64 lanes" in out and "36497 queries" in out and "dry run" in out
