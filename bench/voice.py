"""Voice-to-voice latency through the real pipeline, in the call simulator.

    python -m bench.voice [-n 20] [--json out.json]

For each turn: the patient's last speech sample → the bot's first audio sample
(the simulator's ``turns``). Two pipelines on the same simulated line and the same
fake OpenAI: MyRobot's ``bot.py``, and the shape of Pipecat's ``daily-pstn-dial-out``
example (transport in → STT → user aggregator → LLM → TTS → transport out →
assistant aggregator, written here). Each at zero service latency and at STT 300 /
LLM first token 400 / TTS first byte 200 ms. Overhead = v2v minus the services'
latency; the target is VAD ``stop_secs`` + 150 ms at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from typing import Any

SENTENCES = [
    "I have a question about my appointment.", "Is it still on Tuesday?", "What time does it start?",
    "Should I bring anything with me?", "Do I need to fast before it?", "Is there parking nearby?",
    "Can my daughter come with me?", "How long will it take?", "Will the doctor call me after?",
    "Do you take my insurance?", "Can I pay at the desk?", "Is the clinic open on weekends?",
    "What if I am running late?", "Can I change the time later?", "Is there a waiting room?",
    "Do I need my old records?", "Should I stop my medicine?", "Can I eat breakfast?",
    "Is the lab on the same floor?", "Thank you, that is all.",
]
LATENCIES = {"zero": {"stt": 0, "llm": 0, "tts": 0}, "realistic": {"stt": 300, "llm": 400, "tts": 200}}


class ReferenceBot:
    """Pipecat's daily-pstn-dial-out pipeline shape, for the simulator's ``bot_module``."""

    @staticmethod
    def sensitive_values_of(req):
        import bot

        return bot.sensitive_values_of(req)

    @staticmethod
    def create_services(req, openai=None):
        import bot

        return bot.create_services(req, openai=openai)

    @staticmethod
    async def run_bot(transport, req, reporter, *, services, call_options=None):
        from pipecat.pipeline.pipeline import Pipeline
        from pipecat.pipeline.worker import PipelineParams, PipelineWorker
        from pipecat.processors.aggregators.llm_context import LLMContext
        from pipecat.processors.aggregators.llm_response_universal import (
            LLMContextAggregatorPair, LLMUserAggregatorParams)
        from pipecat.workers.runner import WorkerRunner

        context = LLMContext()
        user, assistant = LLMContextAggregatorPair(
            context, user_params=LLMUserAggregatorParams(vad_analyzer=services.vad_analyzer))
        worker = PipelineWorker(
            Pipeline([transport.input(), services.stt, user, services.llm, services.tts,
                      transport.output(), assistant]),
            params=PipelineParams(enable_metrics=True), enable_rtvi=False)

        @transport.event_handler("on_joined")
        async def on_joined(transport, data):
            await transport.start_dialout({"phoneNumber": req.dialout_settings.phone_number})

        @transport.event_handler("on_participant_left")
        async def on_participant_left(transport, participant, reason):
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()


def scenario(turns: int, latency: dict[str, float]) -> dict[str, Any]:
    callee: list[dict[str, Any]] = [{"say": "Hello?"}, {"wait_for_bot": 0.5}]
    for i in range(turns):
        callee += [{"say": SENTENCES[i % len(SENTENCES)]}, {"wait_for_bot": 0.5}]
    callee.append({"hangup": True})
    return {"direction": "dial_out", "dialout": {"result": "answered", "after_s": 0.5}, "callee": callee,
            "llm": [{"text": "Okay, noted."}] * (turns + 5), "latency_ms": latency,
            "workflow": {"silence_timeout_s": 30}, "timeout_s": 30 + turns * 12}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(turns: int) -> list[dict[str, Any]]:
    import bot
    from botkit.simulate import simulate

    rows = []
    for label, module in (("MyRobot bot.py", bot), ("Pipecat daily-pstn-dial-out shape", ReferenceBot)):
        for name, latency in LATENCIES.items():
            report = await simulate(scenario(turns, latency), bot_module=module)
            measured = [t["latency_ms"] for t in report["turns"][1:] if t["latency_ms"] is not None]
            services = sum(latency.values())
            overhead = [v - services for v in measured]
            rows.append({"label": label, "services": name, "services_ms": services, "turns": len(measured),
                         "v2v_p50_ms": pct(measured, 0.5), "v2v_p95_ms": pct(measured, 0.95),
                         "overhead_p50_ms": pct(overhead, 0.5), "overhead_p95_ms": pct(overhead, 0.95),
                         "overhead_mean_ms": round(statistics.mean(overhead)) if overhead else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.voice", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--turns", type=int, default=20)
    parser.add_argument("--json", default=None)
    args, _unknown = parser.parse_known_args(argv)  # the smoke test's stack arguments do not apply
    from botkit.simulate import quiet_logs

    quiet_logs("ERROR")
    rows = asyncio.run(run(args.turns))
    print("| pipeline | services | turns | v2v p50 | v2v p95 | overhead p50 | overhead p95 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['services']} ({r['services_ms']} ms) | {r['turns']} | {r['v2v_p50_ms']} | "
              f"{r['v2v_p95_ms']} | {r['overhead_p50_ms']} | {r['overhead_p95_ms']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "voice", "target_overhead_p50_ms": 350, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
