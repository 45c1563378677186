#!/bin/sh
# vfetch against a loopback stand-in for the Hugging Face hub: listing with
# pagination, redirects to a CDN, hashes, resume after a cut, restart on
# 200, retries on 429 and 500, 401 and 404, the token kept from the CDN,
# the cache and --offline; TinyStories, URLs, local files and archives.
. "${0%/*}/../lib.sh"

# Nothing from the caller's Hugging Face settings leaks into the tests.
unset HF_TOKEN HF_ENDPOINT HF_HUB_OFFLINE
FX="$VESPER_SRC/tests/fetch"
CL="$FX/hub/OpenLLM-France/Claire-Dialogue-French-0.1"
# The loopback hub's commit for the branch main (hubserver.py: sha1 of the
# name).
MAIN=$(printf main | sha1sum | cut -c1-40)
srv=""
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; rm -rf "$T"' EXIT

# serve [hubserver options]: (re)start the server; sets EP and CDN.
serve() {
	[ -n "$srv" ] && kill $srv 2>/dev/null && wait $srv 2>/dev/null
	rm -f ports
	: > log
	python3 "$FX/hubserver.py" --root "$FX/hub" --portfile ports --log log "$@" &
	srv=$!
	i=0
	while [ ! -s ports ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
	read -r hp cp < ports
	EP="http://127.0.0.1:$hp"
	CDN="http://127.0.0.1:$cp"
}

# paragraphs FILE...: the expected Claire documents, computed here from the
# fixtures, as "text" values one per line (JSON-encoded).
cat > paras.py <<'PY'
import json, sys
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read().replace("\r\n", "\n")
    for p in text.split("\n\n"):
        p = "\n".join(l for l in p.split("\n") if l.strip())
        if p:
            print(json.dumps(p, ensure_ascii=False))
PY
# texts: the "text" of each JSON line of stdin, same encoding; checks that
# every line is an object with string id, source and text.
cat > texts.py <<'PY'
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    assert set(d) == {"id", "source", "text"}, d
    assert all(isinstance(d[k], str) for k in d), d
    print(json.dumps(d["text"], ensure_ascii=False))
PY

serve
run 0 vfetch --cache c --endpoint "$EP" --list claire
like out "^Theatre +$(wc -c < "$CL/FR/Theatre/train.txt" | tr -d ' ') +$(wc -c < "$CL/FR/Theatre/test.txt" | tr -d ' ')\$" \
    "--list shows each subset with its train and test sizes"
like out '^Debats ' "--list shows every subset"
[ "$(grep -c "tree/$MAIN" log)" -ge 4 ]; ok $? "the listing was read page by page (Link: rel=next)"

run 0 vfetch --cache c --endpoint "$EP" claire
cp out claire.jsonl
python3 texts.py < out > got.txt
python3 paras.py "$CL"/FR/Conversations/train.txt "$CL"/FR/Debats/train.txt "$CL"/FR/Theatre/train.txt > want.txt
same got.txt want.txt "claire: one document per dialogue of every train.txt, turns kept as lines"
like out '^\{"id":"Debats/train/1","source":"Debats","text":"\[speaker001:\] Nous passons' \
    "ids name the subset and split; the source is the subset"
like log '^cdn GET /cdn/.*FR/Theatre/train.txt' "files come through the redirect to the CDN"
unlike log 'test.txt' "the default split is train"
[ -f "c/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/$MAIN/FR/Debats/train.txt" ]
ok $? "the files are cached under the commit"
like c/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/refs/main "^$MAIN\$" \
    "the commit of the branch is remembered"
like err "revision main is commit $MAIN" "vfetch reports the commit, to pin it"
like log "tree/$MAIN" "the listing is asked for at the commit, not the branch"
: > log
run 0 vfetch --cache c --endpoint "$EP" --revision "$MAIN" claire
unlike log 'revision/' "--revision with a commit id needs no revision lookup"
unlike err 'is commit' "and says nothing about it"

: > log
run 0 vfetch --cache c --endpoint "$EP" claire
unlike log 'resolve' "a second run takes the files from the cache"
same out claire.jsonl "with the same output"

serve --relative-links
run 0 vfetch --cache c17 --endpoint "$EP/" claire
same out claire.jsonl "next-page links without a host, and an endpoint with a slash"
serve
run 0 vfetch --cache c --endpoint "$EP" --split test --subset Theatre,Conversations claire
python3 texts.py < out > got.txt
python3 paras.py "$CL"/FR/Conversations/test.txt "$CL"/FR/Theatre/test.txt > want.txt
same got.txt want.txt "--split test --subset picks those files only"
run 1 vfetch --cache c --endpoint "$EP" --subset Opera claire
like err 'no subset "Opera"' "an unknown subset is named"

kill $srv; wait $srv 2>/dev/null; srv=""
run 0 vfetch --cache c --endpoint "http://127.0.0.1:9" --offline claire
same out claire.jsonl "--offline works from the cache with no server"
run 0 env HF_HUB_OFFLINE=1 vfetch --cache c --endpoint "http://127.0.0.1:9" claire
same out claire.jsonl "HF_HUB_OFFLINE=1 is --offline"
run 1 vfetch --cache c --offline --split all claire
like err 'not in the cache' "--offline names what the cache lacks"
run 1 vfetch --cache empty --offline claire
like err 'not in the cache' "--offline with an empty cache"

# A connection cut half-way: the download resumes with a Range request.
serve --cut FR/Theatre/train.txt=1
run 0 vfetch --cache c2 --endpoint "$EP" --retry-wait 0 claire
same out claire.jsonl "a cut connection: the file is finished and verified"
like log 'Theatre/train.txt.*range=bytes=[1-9][0-9]*-' "by resuming with Range"
# The server ignores Range and answers 200: start the file over.
serve --cut FR/Theatre/train.txt=1 --no-range
run 0 vfetch --cache c3 --endpoint "$EP" --retry-wait 0 claire
same out claire.jsonl "a 200 answer to a Range request: the file starts over, verified"
# Killed between attempts (no retries): a .part, nothing under the final
# name; the next run resumes it.
serve --cut FR/Debats/train.txt=1
run 1 vfetch --cache c4 --endpoint "$EP" --retries 0 claire
D4=c4/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/$MAIN/FR/Debats
[ -s "$D4/train.txt.part" ] && [ ! -e "$D4/train.txt" ]
ok $? "an interrupted download stays a .part, never under the final name"
: > log
run 0 vfetch --cache c4 --endpoint "$EP" claire
same out claire.jsonl "the next run finishes it"
like log 'Debats/train.txt.*range=bytes=[1-9]' "from where it stopped"

# Progress: bytes, rate and time, on request when stderr is no terminal.
serve
run 0 vfetch --cache c14 --endpoint "$EP" --progress --subset Theatre claire
like err '^FR/Theatre/train.txt: 100\.0% .*B/s.*took' "--progress shows bytes, rate and time"
run 0 vfetch --cache c15 --endpoint "$EP" --subset Theatre claire
unlike err '%' "no progress lines when stderr is not a terminal"

# Two runs on one cache: the second does not write into the first one's
# partial file.
if command -v flock >/dev/null 2>&1; then
	D16=c16/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/$MAIN/FR/Debats
	mkdir -p "$D16"
	: > "$D16/train.txt.part"
	flock "$D16/train.txt.part" sh -c ': > locked; sleep 3' &
	lk=$!
	i=0
	while [ ! -e locked ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	run 1 vfetch --cache c16 --endpoint "$EP" --subset Debats claire
	like err 'another vfetch is downloading' "a .part locked by another run is left alone"
	wait $lk
	run 0 vfetch --cache c16 --endpoint "$EP" --subset Debats claire
else
	skip "locked .part" "no flock(1)"
fi

# A wrong hash in the listing.
serve --wrong-hash FR/Debats/train.txt
run 1 vfetch --cache c5 --endpoint "$EP" claire
like err 'FR/Debats/train.txt: SHA-256 mismatch' "a wrong hash is a clear error naming the file"
[ ! -e c5/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/$MAIN/FR/Debats/train.txt ] &&
    [ ! -e c5/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/$MAIN/FR/Debats/train.txt.part ]
ok $? "and leaves nothing in the cache"
[ ! -s out ]; ok $? "and no document"

# Files outside LFS are checked against their git blob id.
serve --no-lfs FR/Debats/train.txt
run 0 vfetch --cache c19 --endpoint "$EP" claire
same out claire.jsonl "a file outside LFS, served by the hub, checked by its git id"
unlike log '^cdn .*Debats/train.txt' "without a redirect"
serve --no-lfs FR/Debats/train.txt --wrong-oid FR/Debats/train.txt
run 1 vfetch --cache c20 --endpoint "$EP" claire
like err 'FR/Debats/train.txt: git object id mismatch' "a wrong git blob id is refused"
[ ! -e c20/hub/datasets--OpenLLM-France-Claire-Dialogue-French-0.1/$MAIN/FR/Debats/train.txt ]
ok $? "and leaves nothing under the final name"

# Authentication: the token goes to the hub and never to the CDN.
serve --token s3cret
run 1 vfetch --cache c6 --endpoint "$EP" claire
like err 'HTTP 401.*HF_TOKEN' "401 without a token says to set HF_TOKEN"
run 1 env HF_TOKEN=wrong vfetch --cache c6 --endpoint "$EP" claire
like err 'HTTP 401.*not accepted' "401 with a wrong token"
: > log
run 0 env HF_TOKEN=s3cret vfetch --cache c6 --endpoint "$EP" claire
same out claire.jsonl "with the right token it works"
like log '^hub .*auth=yes' "the hub gets the token"
unlike log '^cdn .*auth=yes' "the redirected host never does"

# Missing things and transient errors.
serve
run 1 vfetch --cache c7 --endpoint "$EP" --revision v9.9 claire
like err 'no dataset .* at revision v9.9' "404 for an unknown revision"
run 2 vfetch --cache c7 --endpoint "$EP" --revision ../x claire
serve --status FR/Theatre/train.txt=429:2
run 0 vfetch --cache c8 --endpoint "$EP" claire
same out claire.jsonl "429 twice, then success (Retry-After honoured)"
[ "$(grep -c "resolve/$MAIN/FR/Theatre/train.txt" log)" -eq 3 ]; ok $? "after two retries"
serve --status FR/Theatre/train.txt=500:1 --status TREE=503:1
run 0 vfetch --cache c9 --endpoint "$EP" --retry-wait 0.01 claire
same out claire.jsonl "500 and 503 are retried"
serve --status FR/Theatre/train.txt=500:99
run 1 vfetch --cache c10 --endpoint "$EP" --retries 2 --retry-wait 0.01 claire
like err 'FR/Theatre/train.txt: HTTP 500 \(gave up after 3 attempts\)' "a lasting 500 gives up, saying so"
serve --status FR/Theatre/train.txt=404:1
run 1 vfetch --cache c11 --endpoint "$EP" claire
like err 'FR/Theatre/train.txt: HTTP 404' "404 on a file is not retried"
serve --extra-entry ../../escape.txt
run 1 vfetch --cache c12 --endpoint "$EP" claire
like err 'unsafe path "\.\./\.\./escape.txt"' "a listing with a path out of the cache is refused"

# TinyStories: stories separated by <|endoftext|>.
serve
run 0 vfetch --cache c --endpoint "$EP" tinystories
[ "$(wc -l < out)" -eq 3 ]; ok $? "tinystories: three train stories"
like out '"id":"tinystories/train/1","source":"tinystories","text":"Tom had a blue kite\. The wind took it up high, over the big tree\.\\n\\nTom laughed' \
    "a story keeps its inner blank line"
run 0 vfetch --cache c --endpoint "$EP" --split test tinystories
like out '"id":"tinystories/valid/1".*Ben lost his shoe' "--split test reads the valid file"

# A URL, cached, with an optional hash.
U="$CDN/cdn/roneneldan/TinyStories/TinyStoriesV2-GPT4-valid.txt"
SUM=$(sha256sum "$FX/hub/roneneldan/TinyStories/TinyStoriesV2-GPT4-valid.txt" | cut -c1-64)
run 0 vfetch --cache c --format eot --sha256 "$SUM" "$U"
[ "$(wc -l < out)" -eq 2 ]; ok $? "a URL with --format eot and its --sha256"
like out '"source":"TinyStoriesV2-GPT4-valid"' "the source of a URL is its file name"
run 0 vfetch --cache c18 --progress --format eot "$U"
like err 'TinyStoriesV2-GPT4-valid.txt: 100\.0% .*took' "a URL's progress has a total from Content-Length"
run 1 vfetch --cache c13 --format eot --sha256 "$(echo "$SUM" | tr 0-9a-f 1-9a-f0)" "$U"
like err 'SHA-256 mismatch' "a URL with the wrong --sha256"
run 1 vfetch --cache c13 "$CDN/cdn/nothing.txt"
like err 'nothing.txt: HTTP 404' "a URL that is not there"
run 2 vfetch --cache c13 --sha256 xyz "$U"
run 2 vfetch --cache c13 ftp://example.org/a.txt

# Local files, directories and archives.
mkdir -p corpus/sub
cp "$CL/FR/Debats/train.txt" corpus/a.txt
cp "$CL/FR/Conversations/train.txt" corpus/sub/b.txt
printf '\211PNG\r\n' > corpus/image.png
printf '{"id":"x1","text":"Première ligne.\\nDeuxième."}\n\n{"text":"Sans id","source":"web","extra":1}\n' > corpus/sub/c.jsonl
run 0 vfetch corpus
python3 texts.py < out > dir.txt
[ "$(wc -l < out)" -eq 6 ]; ok $? "a directory: 2 + 2 documents of text, 2 of JSON Lines"
like err '1 files skipped' "the image is skipped, and counted"
like out '^\{"id":"x1","source":"corpus","text":"Première ligne\.\\nDeuxième\."\}$' "a JSON Lines id is kept"
like out '"id":"corpus/sub/c.jsonl/1","source":"web","text":"Sans id"' "a JSON Lines source is kept, an id made"
like out '"id":"corpus/a.txt/0","source":"corpus"' "ids name the file"
(cd corpus && bsdtar -cf ../corpus.tar a.txt sub image.png && bsdtar -czf ../corpus.tar.gz a.txt sub &&
    bsdtar --zstd -cf ../corpus.tar.zst a.txt sub && bsdtar --format zip -cf ../corpus.zip a.txt sub &&
    7z a -bd ../corpus.7z a.txt sub >/dev/null)
for a in corpus.tar corpus.tar.gz corpus.tar.zst corpus.zip corpus.7z; do
	if [ -s "$a" ]; then
		run 0 vfetch "$a"
		python3 texts.py < out | sort > arch.txt
		sort dir.txt > dir.sorted
		same arch.txt dir.sorted "$a: the same documents as the directory"
	else
		skip "$a" "could not make the archive"
	fi
done
like out '"id":"corpus.7z/a.txt/0","source":"corpus"' "archive members are named in ids"
gzip -c corpus/a.txt > a.txt.gz
zstd -q -c corpus/a.txt > a.txt.zst
run 0 vfetch --source debats a.txt.gz a.txt.zst
[ "$(grep -c '"source":"debats"' out)" -eq 4 ]; ok $? "single .gz and .zst files, --source"
run 0 vfetch --format line - < corpus/a.txt
[ "$(wc -l < out)" -eq 7 ]; ok $? "standard input, --format line"
run 0 vfetch --format whole corpus/a.txt
[ "$(wc -l < out)" -eq 1 ]; ok $? "--format whole"

# Hostile and broken input.
head -c 200 corpus.tar.gz > cut.tar.gz
run 1 vfetch cut.tar.gz
like err 'cut.tar.gz' "a truncated archive is an error naming it"
head -c 300 corpus.zip > cut.zip
run 1 vfetch cut.zip
like err 'cut.zip' "a truncated zip"
printf 'not a 7z file at all' > bad.7z
run 1 vfetch bad.7z
like err 'bad.7z' "a file that is not an archive"
printf 'bonjour\nca va \377 bien\n' > bad.txt
run 1 vfetch bad.txt
like err 'bad.txt:2: invalid UTF-8' "invalid UTF-8 names the file and line"
printf '{"text":"ok"}\n{"text":\n' > bad.jsonl
run 1 vfetch bad.jsonl
like err 'bad.jsonl:2' "broken JSON Lines name the file and line"
printf '{"txt":"ok"}\n' > notext.jsonl
run 1 vfetch notext.jsonl
like err 'notext.jsonl:1: no string "text"' "a JSON line without text"
mkdir oddname && printf 'texte\n' > "oddname/$(printf 'nom\377.txt')"
run 0 vfetch oddname
python3 texts.py < out > /dev/null
ok $? "a file name that is not UTF-8 still gives valid JSON"
like out "$(printf '"id":"oddname/nom\357\277\275[.]txt/0"')" "its bad byte becomes U+FFFD in the id"
if [ -w /dev/full ]; then
	vfetch corpus/a.txt > /dev/full 2>err
	ok $(($? != 1)) "a full standard output is an error"
	like err 'standard output: write error' "saying so"
fi
run 1 vfetch no-such-file.txt
like err 'no-such-file.txt' "a missing file is named"

# Usage.
run 2 vfetch
run 2 vfetch --split dev claire
run 2 vfetch --format xml a.txt
run 2 vfetch --list tinystories
run 2 vfetch --subset Theatre tinystories
run 2 vfetch --retries -1 claire
done_testing
