"""Many visitors with photos of their own (benchmarks/sessions.py, scaled down): the app keeps at most its cap of
photos for a second Analyze, lets go of the oldest first, asks those sessions for the photo again, and its
memory grows by no more than the cap and a margin."""
from __future__ import annotations


def test_many_sessions_stay_within_the_memory_cap_and_the_oldest_are_asked_again(tmp_path):
    from benchmarks.sessions import get_args_parser, main
    cap = 16
    args = get_args_parser().parse_args(["--sessions", "20", "--photo-mb", "2", "--session-mb", str(cap),
                                         "--upload-seconds", "10", "--parallel", "4",
                                         "--out", str(tmp_path / "sessions.json")])
    r = main(args)
    first, second = r["first"], r["second"]
    assert r["app_alive"]
    assert first["answered"] + first["busy"] == 20 and first["answered"] >= 1, first["errors"]
    fit = int(cap // r["photo_mb"])  # photos the cap holds
    assert second["answered"] + second["upload_again"] == 20, second["errors"]
    assert 1 <= second["answered"] <= fit, second
    assert r["rss_growth_mb"] <= cap + 150, r
