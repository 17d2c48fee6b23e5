#!/usr/bin/env python3
"""Tests of the `treni` command line (ctest cli_test):

  python3 test/cli/cli_test.py --treni build/bin/treni

Tests that `treni run` with no arguments answers the default prompt with the
built-in model and shows the prompt, the text, the timings and the awareness
summary; that the token-id mode still prints ids and its --json report; and
that bad --max-seq, --device, --request-timeout and --queue-size values are
clear errors (exit code 1, a message naming the flag and the numbers), never
a crash or an attempt to allocate them. Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

TRENI = None
# Every run gets a fresh kernel cache (a GPU machine compiles into it).
CACHE = tempfile.mkdtemp(prefix="treni-cli-test-")


def treni(*args, timeout=120):
    env = dict(os.environ, TRENI_CACHE_DIR=CACHE)
    return subprocess.run([TRENI, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


class DefaultRunTest(unittest.TestCase):
    """Tests that plain `treni run` shows what Treni does."""

    @classmethod
    def setUpClass(cls):
        cls.proc = treni("run")

    def test_succeeds(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)

    def test_shows_model_and_prompt(self):
        self.assertRegex(self.proc.stderr, r"(?m)^model: \S+ \[(cpu|gpu), ")
        self.assertRegex(self.proc.stderr, r"(?m)^prompt: What is 12 \+ 34\?$")

    def test_prints_the_answer(self):
        # The built-in model (test/fixtures/default) is a trained adder: the
        # text is the sum, then a newline.
        self.assertEqual(self.proc.stdout, "46\n")

    def test_prints_timings(self):
        err = self.proc.stderr
        self.assertRegex(err, r"(?m)^load: \d+\.\d+ s \(")
        self.assertRegex(
            err, r"(?m)^prefill: \d+ tokens \(chat template\), "
                 r"time to first token \d+\.\d+ ms$")
        self.assertRegex(
            err, r"(?m)^decode: \d+ tokens, \d+\.\d+ tokens/s \(finished: "
                 r"(eos|stop|length)\)$")

    def test_prints_awareness(self):
        err = self.proc.stderr
        self.assertRegex(
            err, r"(?m)^awareness: perplexity \d+\.\d+, mean entropy \d+\.\d+, "
                 r"max entropy \d+\.\d+ \(nats\)$")
        low = re.search(r"(?m)^low-confidence: (\d+) of (\d+) tokens under "
                        r"p=0\.50(: .*)?$", err)
        self.assertIsNotNone(low, err)
        decoded = int(re.search(r"(?m)^decode: (\d+) tokens", err).group(1))
        self.assertEqual(int(low.group(2)), decoded)
        self.assertLessEqual(int(low.group(1)), decoded)
        # The listed tokens are the low-confidence ones, with probabilities
        # under the threshold.
        listed = re.findall(r"\(p=(\d\.\d+)\)", low.group(3) or "")
        self.assertEqual(len(listed), min(int(low.group(1)), 8))
        for p in listed:
            self.assertLessEqual(float(p), 0.5)


class ModelTest(unittest.TestCase):
    """Tests that need the built-in model's directory."""

    @classmethod
    def setUpClass(cls):
        proc = treni("run", "--device", "cpu", "--max-tokens", "1")
        match = re.search(r"(?m)^model: (\S+) \[", proc.stderr)
        if not match:
            raise RuntimeError("no model line: " + proc.stderr)
        cls.model = match.group(1)
        with open(os.path.join(cls.model, "config.json")) as f:
            cls.config = json.load(f)

    def assertCleanError(self, proc, *pieces):
        """Exit code 1 (no signal), one `treni: error:` line naming `pieces`."""
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("treni: error: ", proc.stderr)
        for piece in pieces:
            self.assertIn(piece, proc.stderr)

    def test_max_seq_past_the_model(self):
        limit = self.config["max_position_embeddings"]
        for value in ("2147483647", "100000000", str(limit + 1)):
            proc = treni("run", "--max-seq", value, timeout=30)
            self.assertCleanError(
                proc, "--max-seq " + value,
                "max_position_embeddings (%d)" % limit)

    def test_max_seq_at_the_model_limit_runs(self):
        limit = self.config["max_position_embeddings"]
        proc = treni("run", "--device", "cpu", "--max-seq", str(limit),
                     "--max-tokens", "2")
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_max_seq_too_small(self):
        self.assertCleanError(treni("run", "--max-seq", "1"), "--max-seq", "at least 2")

    def test_prefill_chunk_bounds(self):
        for value in ("0", "-3", "65536"):
            self.assertCleanError(treni("run", "--device", "cpu", "--prefill-chunk", value),
                                  "--prefill-chunk must be 1 to 65535 tokens, not " + value)

    def test_chunked_prefill_gives_the_same_tokens(self):
        # A 40-token prompt in chunks of 16 (three chunks) generates what the
        # whole prompt at once does, and --json reports the context size.
        runs = []
        for chunk in ("2048", "16"):
            proc = treni("run", self.model, "--device", "cpu", "--prompt-length", "40",
                         "--max-tokens", "6", "--prefill-chunk", chunk, "--json")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            tokens, report = proc.stdout.splitlines()
            self.assertEqual(json.loads(report)["max_seq"],
                             min(4096, self.config["max_position_embeddings"]))
            runs.append(tokens)
        self.assertEqual(runs[0], runs[1])
        self.assertEqual(len(runs[0].split(",")), 6)

    def test_kv_cache_larger_than_memory(self):
        # A model that claims 2^31 positions: the KV cache of --max-seq
        # 2147483647 (about 1 TB in fp32 on the fixture's shape) is refused
        # before anything is allocated (the directory is opened, headers
        # only; no weight is read).
        with tempfile.TemporaryDirectory() as tmp:
            config = dict(self.config, max_position_embeddings=2**31 - 1)
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(config, f)
            os.symlink(os.path.join(self.model, "model.safetensors"),
                       os.path.join(tmp, "model.safetensors"))
            proc = treni("run", tmp, "--device", "cpu", "--max-seq",
                         "2147483647", timeout=30)
        self.assertCleanError(proc, "--max-seq 2147483647 needs a",
                              "KV cache", "physical memory")

    def test_id_mode_unchanged(self):
        proc = treni("run", self.model, "--device", "cpu", "--prompt-ids",
                     "1,2,3", "--max-tokens", "4", "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 2, proc.stdout)
        self.assertRegex(lines[0], r"^\d+,\d+,\d+,\d+$")
        report = json.loads(lines[1])
        self.assertEqual(list(report), [
            "device", "gpu", "prompt_tokens", "new_tokens", "max_seq", "repeat", "ttft_ms",
            "decode_tok_s", "ms_per_token", "load_s", "compile_s", "kernel_s",
            "weights_s", "weight_gb_s", "weight_bytes", "nvrtc_compiles",
            "cache_hits", "aot_kernels", "source", "first_token_s"])
        self.assertEqual(report["device"], "cpu")
        self.assertEqual(report["prompt_tokens"], 3)
        self.assertEqual(report["new_tokens"], 4)
        self.assertEqual(report["repeat"], 1)
        self.assertEqual(report["source"], "compiled with MLIR")
        self.assertGreater(report["decode_tok_s"], 0)
        self.assertGreater(report["weight_bytes"], 0)
        self.assertGreaterEqual(report["first_token_s"], report["load_s"])
        self.assertRegex(proc.stderr, r"(?m)^decode: 3 tokens, ")

    def test_streamed_and_stepped_decode_agree(self):
        # Greedy ids are the same whether decode streams (the default) or
        # steps one at a time (what --dump-logits does, one logits row per
        # step: the prefill's and 5 decode steps').
        with tempfile.TemporaryDirectory() as tmp:
            stream = treni("run", self.model, "--device", "cpu",
                           "--prompt-ids", "5,6,7", "--max-tokens", "6")
            logits = os.path.join(tmp, "logits.bin")
            step = treni("run", self.model, "--device", "cpu", "--prompt-ids",
                         "5,6,7", "--max-tokens", "6", "--dump-logits", logits)
            self.assertEqual(stream.returncode, 0, stream.stderr)
            self.assertEqual(step.returncode, 0, step.stderr)
            self.assertEqual(stream.stdout, step.stdout)
            self.assertEqual(os.path.getsize(logits),
                             6 * self.config["vocab_size"] * 4)

    def test_prompt_and_ids_do_not_mix(self):
        self.assertCleanError(treni("run", "--prompt", "hi", "--json"),
                              "--prompt", "--json")

    def test_bad_device(self):
        self.assertCleanError(treni("run", "--device", "tpu"),
                              "--device must be auto, cpu or gpu, not tpu")

    def test_missing_model(self):
        self.assertCleanError(treni("run", "/nonexistent/model"))


class ServeFlagsTest(unittest.TestCase):
    """Tests that `treni serve` refuses bad values before loading anything."""

    def serve(self, *args):
        return treni("serve", "--port", "0", *args, timeout=30)

    def test_request_timeout(self):
        for value in ("nan", "inf", "-1", "0", "1e300"):
            proc = self.serve("--request-timeout", value)
            self.assertEqual(proc.returncode, 1, value + ": " + proc.stderr)
            self.assertIn("--request-timeout must be a number of seconds",
                          proc.stderr, value)
            self.assertNotIn("listening", proc.stderr)

    def test_queue_size(self):
        for value in ("0", "-3"):
            proc = self.serve("--queue-size", value)
            self.assertEqual(proc.returncode, 1, proc.stderr)
            self.assertIn("--queue-size must be at least 1, not " + value,
                          proc.stderr)

    def test_port(self):
        proc = self.serve("--port", "70000")
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("--port must be in 0..65535, not 70000", proc.stderr)

    def test_model_specs(self):
        """Tests that --model NAME=DIR[:KIND] is checked before any load."""
        fixture = os.path.join(os.path.dirname(__file__), "..", "fixtures",
                               "qwen2")
        cases = [
            (["--model", "nodir"], "--model nodir: expected NAME=DIR[:KIND]"),
            (["--model", "a="], "--model a=: no directory after '='"),
            (["--model", "=" + fixture], "1 to 256 characters, not 0"),
            (["--model", 'a"b=' + fixture], "a control character, a quote"),
            (["--model", "a=" + fixture, "--model", "a=" + fixture],
             "two --model flags serve the name 'a'"),
            (["--model", "a=" + fixture, "--served-model-name", "b"],
             "drop --served-model-name and --model-kind"),
            ([fixture, "--model", "a=" + fixture],
             "either as MODEL or as --model NAME=DIR, not both"),
            (["--model", "a=/nonexistent/dir:embedding"],
             "model 'a' (/nonexistent/dir): "),
            (["--model", "a=" + fixture, "--model", "b=" + fixture,
              "--enable-agent-api", "--model-kind", "chat"],
             "drop --served-model-name and --model-kind"),
        ]
        for args, message in cases:
            proc = self.serve("--device", "cpu", *args)
            self.assertEqual(proc.returncode, 1, f"{args}: {proc.stderr}")
            self.assertIn(message, proc.stderr, args)
            self.assertNotIn("listening", proc.stderr)


class AgentRagTest(unittest.TestCase):
    """Tests that `treni agent run` runs the rag tools on an embedding model
    it loads beside the chat model (--embedding-model NAME=DIR), and that a
    rag section naming a model it did not load is a clear error."""

    FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                            "fixtures")
    EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                           "..", "docs", "examples", "rag.agent")

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="treni-cli-rag-")
        # The fixtures have no reranker (no yes/no tokens): search without.
        with open(self.EXAMPLE) as f:
            source = f.read().replace("rerank: true", "rerank: false")
        self.flow = os.path.join(self.dir, "rag.agent")
        with open(self.flow, "w") as f:
            f.write(source)
        self.tools = os.path.join(self.dir, "tools.json")
        with open(self.tools, "w") as f:
            json.dump({"rag": {"path": "rag.db", "embedding_model": "emb"}}, f)
        self.args = os.path.join(self.dir, "args.jsonl")
        with open(self.args, "w") as f:
            f.write(json.dumps({
                "question": "Why do cats purr?",
                "documents": ["Cats purr when content.", "Dogs bark."],
                "sources": [{"t": "cats"}, {"t": "dogs"}]}) + "\n")

    def run_flow(self, *extra):
        return treni("agent", "run", self.flow, "--model",
                     os.path.join(self.FIXTURES, "qwen2"), "--tools-config",
                     self.tools, "--batch", self.args, "--max-seq", "2048",
                     *extra, timeout=120)

    def test_ingests_searches_and_answers(self):
        proc = self.run_flow("--embedding-model",
                             "emb=" + os.path.join(self.FIXTURES, "qwen3"))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertTrue(summary["ok"], summary)
        self.assertEqual(summary["steps"], 3)  # ingest, search, generate
        self.assertEqual(summary["tool_failures"], 0, summary)
        # The collection is on disk, beside the tools file.
        self.assertTrue(os.path.exists(os.path.join(self.dir, "rag.db")))

    def test_unloaded_model_is_a_clear_error(self):
        proc = self.run_flow()
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("rag.embedding_model 'emb' is not loaded "
                      "(give --embedding-model emb=DIR)", proc.stderr)
        proc = self.run_flow("--embedding-model", "emb")
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("--embedding-model 'emb' is not NAME=DIR", proc.stderr)


def main():
    global TRENI
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--treni", required=True)
    args, rest = parser.parse_known_args()
    TRENI = os.path.abspath(args.treni)
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
