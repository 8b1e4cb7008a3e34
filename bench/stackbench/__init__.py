"""The whole-stack benchmark's parts; ``bench/stack_bench.py`` is its entry point (CLI).

* :mod:`stackbench.plan` -- what a run measures (presets ``FULL``, ``QUICK``) and the targets;
* :mod:`stackbench.workload` -- test audio from the shared clips, and the streaming client;
* :mod:`stackbench.harness` -- the four processes (on :mod:`services.common.processes`)
  and the CPU meter;
* :mod:`stackbench.phases` -- the phases (latency, throughput, scaling, int8, naive monolith);
* :mod:`stackbench.report` -- summaries, targets' verdicts, Markdown, plot, README block.

Imported as ``stackbench`` with ``bench/`` on ``sys.path`` (as the bench scripts set it up),
next to ``procstat`` and ``naive_monolith``.
"""
