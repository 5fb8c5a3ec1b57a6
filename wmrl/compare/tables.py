"""A comparison as tables: plain text for the terminal, Markdown for compare.md."""
from __future__ import annotations

from wmrl.compare.stats import STATISTICS


def frames_label(frames: int) -> str:
  """50000 -> 50k, 1000000 -> 1M; other counts as they are."""
  if frames and frames % 1_000_000 == 0:
    return f"{frames // 1_000_000}M"
  if frames and frames % 1000 == 0:
    return f"{frames // 1000}k"
  return str(frames)


def _range_cell(entry: dict | None, digits: int, seeds: int | None = None) -> str:
  """mean [min, max], with (n) when fewer than `seeds` seeds reached the point."""
  if entry is None or entry.get("mean") is None:
    return "missing"
  text = f"{entry['mean']:.{digits}f} [{entry['min']:.{digits}f}, {entry['max']:.{digits}f}]"
  if seeds is not None and entry["n"] < seeds:
    text += f" ({entry['n']})"
  return text


def _runs_cell(point: dict, seeds: int) -> str:
  """The runs' figures, then `in` or `out`: their mean inside the published band or not."""
  text = _range_cell(point["runs"], 1, seeds)
  if point["inside"] is not None:
    text += " in" if point["inside"] else " out"
  return text


def _share(verdict: dict) -> str:
  """'4/6 (67%)', or 'none judged'."""
  if verdict["share"] is None:
    return "none judged"
  return f"{verdict['inside']}/{verdict['points']} ({verdict['share']:.0%})"


def _ci_cell(entry: dict | None, digits: int) -> str:
  if entry is None:
    return "missing"
  text = f"{entry['value']:.{digits}f}"
  if entry["ci"] is not None:
    text += f" [{entry['ci'][0]:.{digits}f}, {entry['ci'][1]:.{digits}f}]"
  return text


def _task_table(result: dict) -> tuple[list[str], list[list[str]]]:
  header = ["task", "source"] + [frames_label(f) for f in result["frames"]] + ["inside"]
  rows = []
  for task, summary in result["tasks"].items():
    seeds = len(summary["runs"])
    published_seeds = summary["published_curve"]["seeds"]
    rows.append([task, f"runs ({seeds})"] + [_runs_cell(p, seeds) for p in summary["points"]]
                + [_share(summary["verdict"])])
    rows.append(["", f"published ({published_seeds})"]
                + [_range_cell(p["published"], 1) for p in summary["points"]] + [""])
  return header, rows


def _aggregate_table(result: dict) -> tuple[list[str], list[list[str]]]:
  header = ["aggregate", "statistic"] + [frames_label(f) for f in result["frames"]]
  rows = []
  for kind, digits in (("normalised", 2), ("raw", 1)):
    entries = result["aggregate"][kind]
    rows.append([kind, "tasks"] + [str(len(e["tasks"])) for e in entries])
    for name in STATISTICS:
      label = "IQM" if name == "iqm" else name
      rows.append(["", label] + [_ci_cell(e[name], digits) for e in entries])
    if kind == "raw":
      rows.append(["", "published mean"] + [
          "missing" if e["published_mean"] is None else f"{e['published_mean']:.1f}"
          for e in entries])
  return header, rows


def _render_text(header: list[str], rows: list[list[str]]) -> str:
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _render_markdown(header: list[str], rows: list[list[str]]) -> str:
  line = lambda cells: "| " + " | ".join(cells) + " |"
  return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def _title(result: dict) -> str:
  tasks = len(result["tasks"])
  return (f"{len(result['runs'])} runs on {tasks} task{'s' * (tasks != 1)} vs DreamerV3 "
          f"'{result['reference']}'; metric {result['metric']}; columns are environment "
          "frames (agent steps x action repeat x the emulator's frame skip), the published "
          f"curves' axis; a run's score at frame f is its mean over "
          f"(f - {frames_label(result['window'])}, f]")


def verdict_line(result: dict) -> str:
  """The overall share of points inside the published band, and the requirement if any."""
  verdict = result["verdict"]
  text = f"inside the published [min, max]: {_share(verdict)} of task points"
  if verdict["require_inside"] is not None:
    met = "met" if verdict["passed"] else "NOT met"
    text += f"; required {verdict['require_inside']:.0%}: {met}"
  return text


def _notes(result: dict) -> str:
  intervals = (f"[..]: 95% stratified bootstrap CI, {result['bootstrap']} resamples"
               if result["bootstrap"] else "no bootstrap intervals (--bootstrap 0)")
  return ("cells: mean [min, max] over seeds; (n): seeds that reached the point; missing: no "
          "seed has a score there (each stopped before the point, or had ended no episode by "
          "then); in / out: "
          "the runs' mean over seeds inside / outside the published [min, max] of the seed "
          "means; inside: the task's points inside. normalised: score / published mean at "
          f"the same point (tasks with a published mean <= 0 left out); {intervals}")


def format_table(result: dict) -> str:
  """The per-task and aggregate tables as plain text, for the terminal."""
  return "\n\n".join([_title(result), _render_text(*_task_table(result)), verdict_line(result),
                      _render_text(*_aggregate_table(result)), _notes(result)])


def format_markdown(result: dict) -> str:
  """The same tables in Markdown."""
  return "\n\n".join([f"# wmrl compare\n\n{_title(result)}",
                      "## Per task\n\n" + _render_markdown(*_task_table(result)),
                      verdict_line(result),
                      "## Aggregate\n\n" + _render_markdown(*_aggregate_table(result)),
                      _notes(result)]) + "\n"
