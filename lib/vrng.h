/* vrng.h: the project's one random number generator.
 *
 * xoshiro256** (Blackman and Vigna) seeded through splitmix64: small, fast,
 * and its whole state is four words, which a training checkpoint saves so
 * that a resumed run draws the same numbers.  Any seed, 0 included, is
 * spread over the whole state, which is never all zero. */
#ifndef VESPER_VRNG_H
#define VESPER_VRNG_H

#include <stdint.h>

struct v_rng {
	uint64_t s[4];
};

void v_rng_seed(struct v_rng *r, uint64_t seed);
uint64_t v_rng_next(struct v_rng *r);
/* Uniform in [0, 1), 24 random bits (exact in a float). */
float v_rng_float(struct v_rng *r);
/* A standard normal deviate (Box-Muller; uses two draws). */
double v_rng_normal(struct v_rng *r);

#endif
