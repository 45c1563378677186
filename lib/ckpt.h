/* ckpt.h: vtrain's checkpoint directories (vesper-checkpoint(5)).
 *
 * OUT/step-NNNNNNNN/ holds
 *   model.safetensors  the parameters, F32, in vlm_layout() order, with the
 *                      configuration, tokenizer hash and step in metadata;
 *   optimizer.bin      the AdamW moments (format below);
 *   cursor.json        where the run stands: step, tokens, random state,
 *                      data position, the run's settings (the loop's JSON,
 *                      stored as given).
 * A checkpoint is written whole into a hidden temporary directory, fsync'ed,
 * then renamed into place, and OUT/latest (a symbolic link) is replaced
 * atomically: a crash at any point leaves the previous checkpoint intact
 * and `latest` pointing at a complete one.
 *
 * optimizer.bin, little-endian:
 *   0  8  magic "VSPROPT1"
 *   8  8  parameter count P
 *   16 4P first moments, f32
 *      4P second moments, f32
 *      8  XXH64 (seed 0) of every byte before it */
#ifndef VESPER_CKPT_H
#define VESPER_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "vlm_config.h"

struct ckpt {
	struct vlm_config cfg;
	char tokenizer[65];	/* hex SHA-256, or "" */
	long step;
	size_t nparams;
	float *params;		/* (P) */
	float *m, *v;		/* (P) each; NULL for a bare model file */
	char *cursor;		/* cursor.json's text; NULL for a bare model */
	char *dir;		/* the directory read, resolved */
};

/* Write step's checkpoint under out (created if missing), point latest at
 * it, then keep only the newest keep step directories (keep <= 0: all).
 * tokenizer: hex or "". */
int ckpt_save(const char *out, const struct vlm_config *c,
    const char *tokenizer, long step, const float *params, const float *m,
    const float *v, const char *cursor, int keep);

/* Read a checkpoint: a step directory, the latest link, an output
 * directory holding latest, or (model only) a .safetensors file.
 * Everything is checked: metadata, each tensor's name, dtype and shape,
 * the optimizer file's size and checksum, the cursor's JSON. */
int ckpt_load(const char *path, struct ckpt *ck);
void ckpt_free(struct ckpt *ck);

/* Names for step's directory: "step-00000042". */
void ckpt_dirname(long step, char *buf, size_t len);

#endif
