/* vrng.c: xoshiro256** seeded through splitmix64. */
#include <math.h>

#include "vrng.h"

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
v_rng_seed(struct v_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
v_rng_next(struct v_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

float
v_rng_float(struct v_rng *r)
{
	return (float)(v_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

double
v_rng_normal(struct v_rng *r)
{
	/* Uniforms in (0, 1]: log never sees 0. */
	double u1 = ((v_rng_next(r) >> 11) + 1) * (1.0 / 9007199254740992.0);
	double u2 = (v_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}
