"""Train the reproduction's runs (both phases) without writing the report: the report is made later by
`ssrf reproduce`, which reuses these content-addressed run folders."""
import sys, time
from pathlib import Path
from ssrf import pipeline
from ssrf import reproduce as RP

def main():
    plan = [p for p in RP.candidate_plans() if p.name == sys.argv[1]][0]
    jobs = int(sys.argv[2]); out = Path(sys.argv[3])
    print("estimate min", RP.estimate_seconds(plan, jobs) / 60, flush=True)
    specs = dict(RP.dataset_specs(plan.beauty_sample_users))
    specs.update({k + RP.LEGACY: RP._legacy(specs[k]) for k in plan.datasets})
    root = RP.default_data_root()
    needed = [*plan.datasets, *[k + RP.LEGACY for k in plan.datasets]]
    prepared = {k: pipeline.prepare([root / f for f in specs[k].files], specs[k].fmt, specs[k].prepare) for k in needed}
    summary = RP.Summary(out=out, report=out / "REPORT.md", plan=plan)
    runner = RP._Runner(specs, prepared, out / "runs", summary, jobs, False, None)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    t = time.time()
    tuning = RP.build_tuning(plan)
    runner.run(tuning)
    chosen = RP.select_lrs(plan, {r.identity(): runner.result(r) for r in tuning})
    print("tuning done", time.time() - t, chosen, flush=True)
    runs = [r for r in RP.build_runs(plan, chosen) if r.dataset != "beauty"]
    runner.run(runs)
    print("all done", time.time() - t, summary.trained, summary.reused, flush=True)


if __name__ == "__main__":
    main()
