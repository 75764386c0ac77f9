"""``bayesopt demo``: the README's main job, a short closed loop on a private embedded Redis, with a report.

It launches the synthetic world's experiment (the feed example: two ranking weights, maximise engaged sessions,
guardrails on applies and shares), serves simulated members through the real Flask app over HTTP, posts their
outcomes through the observations API and runs the real refit job every simulated hour with our GP policy.
Then, for comparison, the same world and traffic under two cheap baselines (per-arm TS and a fixed A/B
grid). The report goes to ``runs/<UTC timestamp>-demo/``: plots (regret, objective and guardrails, where the
traffic went), hourly CSV and a JSON summary. Heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jobs.commands import ExitCode, add_json_flag, print_json
from jobs.settings import Settings
from simulations.commands.simulate import POLICIES, add_loop_arguments, default_out, policy_overrides

#: Sized to finish well under 5 minutes on 2 CPU cores: 55 s measured at load ~1.5, with the two baselines
#: (docs/closed_loop.md).
DEMO_HOURS = 24
DEMO_MEMBERS = 30000.0
DEMO_DRAWS = 1000
DEMO_CANDIDATES = 256


#: Printed after the table: what a person should look for in the figures.
WHAT_TO_NOTICE = """What to look for:
- regret.png: regret per hour (left, with the dotted floor that serving control at its fixed share costs even
  when everything else is on the best arm) and cumulated (right). A policy that learns brings its hourly
  regret down towards the floor; one that does not stays high.
- traffic.png: where traffic went, on the true feasibility map. {policy} starts next to control (the launch
  design explores only what the risk budget allows before any data) and widens from there as its guardrail
  models become confident; the right panel is the share on truly guardrail-breaking arms against the
  {budget:g}% budget (max_unsafe_share) that every published version keeps in expectation.
- metrics.png: the objective's lift and each guardrail against control, hour by hour, with the limits drawn in:
  the guardrail lines should stay above their limits while the objective climbs.
The table's columns say the same in numbers; docs/closed_loop.md has the multi-seed study."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``bayesopt`` subcommands."""
    p = sub.add_parser(
        "demo",
        help="a short closed loop (real Redis, HTTP app and refit job) on a synthetic ranker, with a report in runs/",
    )
    p.add_argument("--policy", choices=POLICIES, default="gp", help="the policy to watch (default %(default)s)")
    p.add_argument("--compare", default="arm_ts,ab_grid",
                   help="comma-separated baselines run on the same world for comparison, or 'none' (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="world and traffic seed (default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the refits (default %(default)s: on a busy machine one thread is fastest)")
    add_loop_arguments(p, hours=DEMO_HOURS, members=DEMO_MEMBERS, num_draws=DEMO_DRAWS, num_candidates=DEMO_CANDIDATES)
    add_json_flag(p, "the summary (summary.json, with the comparison)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the loop and the baselines, write the report, print the comparison (or the summary as JSON)."""
    from simulations.loop import LoopConfig, run_closed_loop
    from simulations.report import POLICY_LABELS, markdown_table, study_table, summarize, write_run_report

    started = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else default_out("demo")
    compare = [] if args.compare.strip().lower() in ("", "none") else [c.strip() for c in args.compare.split(",")]
    unknown = [c for c in compare if c not in POLICIES]
    if unknown:
        print(f"bayesopt: error: --compare: unknown policy {', '.join(unknown)} (known: {', '.join(POLICIES)})",
              file=sys.stderr)
        return ExitCode.USAGE
    say = print if not args.json else (lambda *a, **k: print(*a, **{**k, "file": sys.stderr}))
    config = LoopConfig(policy=args.policy, seed=args.seed, hours=args.hours, members_per_hour=args.members_per_hour,
                        num_parameters=args.num_parameters, policy_overrides=policy_overrides(args))
    say(f"closed loop: {args.hours} simulated hours, ~{args.members_per_hour:g} members/h, policy {args.policy}, "
          f"each on a private embedded redis-server + the serving app on 127.0.0.1", flush=True)
    result = run_closed_loop(config, desc=POLICY_LABELS.get(args.policy, args.policy))
    docs = [result.to_dict()]
    paths = write_run_report(result, out)
    for name in compare:
        other = run_closed_loop(LoopConfig(**{**config.to_dict(), "policy": name}), desc=POLICY_LABELS.get(name, name))
        docs.append(other.to_dict())
        write_run_report(other, out / name)
    summaries = [summarize(d) for d in docs]
    table = markdown_table(study_table(summaries))
    s = summaries[0]
    wall = time.perf_counter() - started
    (out / "comparison.md").write_text(table + "\n")
    doc = json.loads(paths["summary"].read_text())
    doc["comparison"] = summaries
    doc["demo_wall_s"] = wall
    paths["summary"].write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print_json(doc)
        return ExitCode.OK
    print()
    print(f"best feasible arm {result.optimum['values']}: {s['best_feasible_lift_pct']:+.2f}% engaged sessions "
          f"vs control (found by exhaustive search of the true metrics)")
    top = ("no arm besides control served in the last hour" if s["top_arm"] is None
           else f"most-served arm {s['top_arm']} {s['top_arm_lift_pct']:+.2f}% "
                f"({'meets' if s['top_arm_feasible'] else 'breaks'} the guardrails)")
    print(f"{args.policy} after {s['hours']} h: served mix {s['final_lift_pct']:+.2f}% vs control, {top}, "
          f"{s['unsafe_after_launch_pct']:.1f}% of traffic after launch on guardrail-breaking arms")
    print()
    print(table)
    print()
    print(f"report: {out}/ (summary.json, hours.csv, regret.png, metrics.png, traffic.png"
          f"{', ' + ', '.join(f'{c}/' for c in compare) if compare else ''}); {wall:.0f} s")
    print()
    print(WHAT_TO_NOTICE.format(budget=s["max_unsafe_share_bound_pct"], policy=args.policy))
    return ExitCode.OK
