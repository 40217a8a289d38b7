"""The CPU planner on a 3,000-word story, against simply cutting the same text into sentences.

    python -m bench.planner [--repeat 20]

The story is made from the public-domain texts under examples/stories: their narrated paragraphs
in turn, with a short exchange between two characters every tenth paragraph, up to 3,000 words
(the plan's word limit). Both passes run `--repeat` times, alternating; the figures are the
medians and the ratio planner / baseline, measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from pipeline.planning.planner import plan_story
from pipeline.planning.text import MAX_STORY_WORDS, paragraphs, sentences

STORIES = Path(__file__).resolve().parents[1] / "examples" / "stories"
EXCHANGE = (
    '"Where does this road go?" asked Mia.\n\n'
    '"Over the hill and down to the sea," said the old Shepherd, "as it always has."'
)


def long_story(words: int = MAX_STORY_WORDS) -> str:
    """A story of exactly `words` words, mostly narration, with a dialogue now and then."""
    narrated = [
        paragraph
        for name in ("fox_and_crow", "three_bears")
        for paragraph in paragraphs((STORIES / f"{name}.txt").read_text(encoding="utf-8"))[1:]
        if '"' not in paragraph
    ]
    parts: list[str] = ["A Long Walk"]
    left = words - len(parts[0].split())
    index = 0
    while left > 0:
        paragraph = EXCHANGE if index % 10 == 9 else narrated[index % len(narrated)]
        kept = paragraph.split(" ")[:left]
        parts.append(" ".join(kept).rstrip(".") + ".")
        left -= len(" ".join(kept).split())
        index += 1
    return "\n\n".join(parts)


def baseline(text: str) -> int:
    """The least a planner does: paragraphs cut into sentences."""
    return sum(len(sentences(paragraph)) for paragraph in paragraphs(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    text = long_story()
    plan = plan_story(text)
    planner_s: list[float] = []
    baseline_s: list[float] = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        plan_story(text)
        planner_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        baseline(text)
        baseline_s.append(time.perf_counter() - started)
    planned, split = statistics.median(planner_s), statistics.median(baseline_s)
    print(
        f"story: {len(text.split())} words; plan: {len(plan.spec.scenes)} scenes, "
        f"{len(plan.spec.characters)} characters, warnings {plan.warnings}"
    )
    print(f"planner: {planned * 1000:.1f} ms (median of {args.repeat})")
    print(f"baseline, sentence split: {split * 1000:.2f} ms")
    print(f"ratio planner / baseline: {planned / split:.0f}x")


if __name__ == "__main__":
    main()
