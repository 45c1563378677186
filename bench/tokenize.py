#!/usr/bin/env python3
"""Benchmark vtokenize against tiktoken and Hugging Face tokenizers on the
same French text, the same vocabulary and the same cores, in one run.

  bench/tokenize.py CORPUS [--vtokenize PATH] [--threads N] [--train-mb MB]

CORPUS is plain text with blank-line-separated documents (bench/tokenize.sh
makes one from Debian's French documentation).  Steps:
  1. vtokenize train a 32,000 vocabulary on CORPUS, export tokenizer.json;
  2. encode: vtokenize (whole process: read, normalise, encode, write the
     stream) against tokenizers (encode_batch on the same documents, from
     memory, normalisation included; and again without its normaliser on
     the text vtokenize normalised) and tiktoken (encode_ordinary_batch
     of the text vtokenize normalised, from memory: tiktoken has no
     normaliser), single-threaded and with all threads; best of 3;
  3. train: vtokenize train against tokenizers' BpeTrainer with the same
     normaliser, pre-tokeniser, vocabulary size, minimum count and special
     tokens, on CORPUS repeated up to --train-mb megabytes; wall time and
     peak resident memory of each process (getrusage).
Prints a Markdown table."""
import argparse, json, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def docs_of(path):
    docs, cur = [], []
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for line in f:
            if line.strip(" \t\r\n") == "":
                if cur:
                    docs.append("".join(cur).rstrip("\n")); cur = []
            else:
                cur.append(line)
    if cur:
        docs.append("".join(cur).rstrip("\n"))
    return docs


def best_of(n, fn):
    return min(fn() for _ in range(n))


def timed_proc(cmd, env=None, stdout=subprocess.DEVNULL):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, env=env)
    return time.perf_counter() - t


# A fork of Python would count Python's own pages in the child's peak, so a
# small C program starts the command and reports its peak resident size.
MAXRSS_C = r'''
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
	(void)argc;
	pid_t p = fork();
	if (p == 0) { execvp(argv[1], argv + 1); _exit(127); }
	int st; struct rusage ru;
	if (wait4(p, &st, 0, &ru) < 0) return 1;
	fprintf(stderr, "maxrss %ld\n", ru.ru_maxrss);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
'''


def peak(cmd, work, env=None):
    """Wall seconds and peak resident kB of cmd."""
    helper = os.path.join(work, "maxrss")
    if not os.path.exists(helper):
        with open(helper + ".c", "w") as f:
            f.write(MAXRSS_C)
        subprocess.run(["cc", "-O2", "-o", helper, helper + ".c"], check=True)
    t = time.perf_counter()
    r = subprocess.run([helper] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {r.stderr.decode()[-500:]}")
    return wall, int(r.stderr.split()[-1])


HF_ENCODE = r'''
import sys, time, tokenizers
docs = open(sys.argv[2], encoding="utf-8").read().split("\x00")
tk = tokenizers.Tokenizer.from_file(sys.argv[1])
if len(sys.argv) > 5:
    tk.normalizer = None
single = sys.argv[3] == "1"
best = 1e9
for _ in range(int(sys.argv[-1])):
    t = time.perf_counter()
    if single:
        for d in docs:
            tk.encode(d, add_special_tokens=False)
    else:
        tk.encode_batch(docs, add_special_tokens=False)
    best = min(best, time.perf_counter() - t)
print(best)
'''

TIKTOKEN_ENCODE = r'''
import sys, time, json, tiktoken
cfg = json.load(open(sys.argv[1]))
ranks = {bytes.fromhex(h): r for h, r in cfg["ranks"]}
enc = tiktoken.Encoding("vesper", pat_str=cfg["pattern"], mergeable_ranks=ranks,
                        special_tokens={})
docs = open(sys.argv[2], encoding="utf-8").read().split("\x00")
n = int(sys.argv[3])
best = 1e9
for _ in range(int(sys.argv[-1])):
    t = time.perf_counter()
    if n == 1:
        for d in docs:
            enc.encode_ordinary(d)
    else:
        enc.encode_ordinary_batch(docs, num_threads=n)
    best = min(best, time.perf_counter() - t)
print(best)
'''

HF_TRAIN = r'''
import sys, json, tokenizers
from tokenizers import models, trainers, pre_tokenizers
tk = tokenizers.Tokenizer.from_file(sys.argv[1])
specials = [t["content"] for t in json.load(open(sys.argv[1]))["added_tokens"]]
tk.model = models.BPE()
tr = trainers.BpeTrainer(vocab_size=32000, min_frequency=2, special_tokens=specials,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                         show_progress=False)
tk.train([sys.argv[2]], tr)
tk.save(sys.argv[3])
'''


def tiktoken_ranks(tok_json):
    """The vocabulary for tiktoken: a token's rank is the order it was made
    in (bytes first), which is the merge order tiktoken follows."""
    j = json.load(open(tok_json))
    # GPT-2's byte-to-character map, inverted.
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    unchar = {chr(c): b for b, c in zip(bs, cs)}
    vocab = j["model"]["vocab"]
    ranks = []
    for s, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        if i < 70:
            continue
        ranks.append((bytes(unchar[c] for c in s).hex(), i - 70))
    return ranks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--vtokenize", default=os.path.join(HERE, "..", "build", "bin", "vtokenize"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--train-mb", type=float, default=100)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    vt = os.path.abspath(a.vtokenize)
    N = a.threads
    work = tempfile.mkdtemp(prefix="vtok-bench.")
    tok = os.path.join(work, "fr.tok")
    tj = os.path.join(work, "tokenizer.json")
    size = os.path.getsize(a.corpus)
    mb = size / 1e6
    print(f"# corpus {a.corpus}: {mb:.1f} MB; {N} threads; work in {work}", file=sys.stderr)

    subprocess.run([vt, "train", "-f", "text", "-o", tok, a.corpus], check=True)
    subprocess.run([vt, "export", "-t", tok, "-o", tj], check=True)
    import tokenizers  # noqa: F401 (fail early when missing)

    docs = docs_of(a.corpus)
    raw = os.path.join(work, "docs.nul")
    with open(raw, "w", encoding="utf-8") as f:
        f.write("\x00".join(docs))
    norm = subprocess.run([vt, "normalize", "-J", "-t", tok, a.corpus], check=True,
                          capture_output=True).stdout.decode().splitlines()
    normf = os.path.join(work, "norm.nul")
    with open(normf, "w", encoding="utf-8") as f:
        f.write("\x00".join(json.loads(l)["text"] for l in norm))
    tkcfg = os.path.join(work, "tiktoken.json")
    # tiktoken's regex engine (fancy-regex) reads the same pattern.
    pattern = json.load(open(tj))["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    json.dump({"pattern": pattern, "ranks": tiktoken_ranks(tj)}, open(tkcfg, "w"))

    rows = []
    for threads in (1, N):
        env = dict(os.environ)
        v = best_of(a.reps, lambda: timed_proc([vt, "encode", "-j", str(threads), "-f", "text",
                                           "-t", tok, a.corpus]))
        env_hf = dict(env, RAYON_NUM_THREADS=str(threads),
                      TOKENIZERS_PARALLELISM="true" if threads > 1 else "false")
        hf = float(subprocess.run([sys.executable, "-c", HF_ENCODE, tj, raw,
                                   "1" if threads == 1 else "n", str(a.reps)], check=True,
                                  capture_output=True, env=env_hf).stdout)
        hfn = float(subprocess.run([sys.executable, "-c", HF_ENCODE, tj, normf,
                                    "1" if threads == 1 else "n", "raw", str(a.reps)], check=True,
                                   capture_output=True, env=env_hf).stdout)
        tt = float(subprocess.run([sys.executable, "-c", TIKTOKEN_ENCODE, tkcfg, normf,
                                   str(threads), str(a.reps)], check=True, capture_output=True,
                                  env=env).stdout)
        rows.append((threads, v, hf, hfn, tt))

    print(f"\nEncode {mb:.1f} MB of French text ({len(docs)} documents), "
          f"32,000-token vocabulary, best of {a.reps}:\n")
    print("| threads | vtokenize | tokenizers | tokenizers, no normaliser | tiktoken "
          "| vs tokenizers | vs tokenizers, no normaliser | vs tiktoken |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads, v, hf, hfn, tt in rows:
        print(f"| {threads} | {v:.2f} s ({mb / v:.0f} MB/s) | {hf:.2f} s ({mb / hf:.1f} MB/s) "
              f"| {hfn:.2f} s ({mb / hfn:.1f} MB/s) | {tt:.2f} s ({mb / tt:.1f} MB/s) "
              f"| {hf / v:.1f}x | {hfn / v:.1f}x | {tt / v:.1f}x |")

    if a.skip_train:
        return
    big = os.path.join(work, "train.txt")
    want = int(a.train_mb * 1e6)
    with open(big, "wb") as out, open(a.corpus, "rb") as f:
        data = f.read()
        n = 0
        while n < want:
            piece = data[: want - n]
            out.write(piece)
            n += len(piece)
    tmb = os.path.getsize(big) / 1e6
    vw, vm = peak([vt, "train", "-j", str(N), "-f", "text", "-o",
                   os.path.join(work, "big.tok"), big], work)
    env_hf = dict(os.environ, RAYON_NUM_THREADS=str(N))
    hw, hm = peak([sys.executable, "-c", HF_TRAIN, tj, big, os.path.join(work, "hf.json")],
                  work, env=env_hf)
    print(f"\nTrain a 32,000 vocabulary on {tmb:.0f} MB ({a.corpus} repeated), "
          f"{N} threads:\n")
    print("| | vtokenize | tokenizers BpeTrainer | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| wall time | {vw:.1f} s | {hw:.1f} s | {hw / vw:.1f}x faster |")
    print(f"| peak memory | {vm / 1024:.0f} MiB | {hm / 1024:.0f} MiB | {hm / vm:.1f}x less |")


main()
