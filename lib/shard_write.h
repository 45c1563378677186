/* shard_write.h: cutting a token stream into a shard directory.
 *
 * The whole stream is read into memory first (its ids at their stream
 * width, 2 or 4 bytes each, plus 8 bytes a document), because the
 * validation split and the shuffle are decided over all documents:
 * a permutation of the documents drawn from the seed puts its first
 * round(val_fraction * docs) documents in val, the rest in train, and with
 * shuffle on each split is written in that permuted order (else in stream
 * order).  The same stream and options always give the same shards. */
#ifndef VESPER_SHARD_WRITE_H
#define VESPER_SHARD_WRITE_H

#include <stdint.h>

#include "tokstream.h"
#include "vprogress.h"

struct shard_write_opts {
	uint64_t shard_tokens;	/* tokens a shard holds (the last one fewer) */
	double val_fraction;	/* in [0, 1) */
	uint64_t seed;
	int shuffle;		/* document-level shuffle */
	int level;		/* zstd level */
	int threads;		/* zstd worker threads; 0: none */
};

struct shard_write_result {
	uint64_t docs[2], tokens[2];	/* per split: SHARD_TRAIN, SHARD_VAL */
	size_t shards[2];
	uint64_t bytes;			/* all shard files together */
};

/* Read the stream in to its end record and write dir (created if needed):
 * shards first, each atomically, then the manifest.  Any manifest already
 * in dir is removed first, so an interrupted run leaves no manifest that
 * disagrees with the shards; shards of an older run that the new manifest
 * does not list are removed at the end.  prog (or NULL) counts tokens read. */
int shard_write_dir(const char *dir, struct ts_reader *in,
    const struct shard_write_opts *o, struct v_progress *prog,
    struct shard_write_result *res);

/* The permutation generator: splitmix64, so the split is reproducible on
 * any platform. */
uint64_t shard_rng_next(uint64_t *state);

#endif
