/* test_vlm_config.c: presets, checks and the JSON round trip. */
#include <stdlib.h>

#include "../../lib/verr.h"
#include "../../lib/vlm_config.h"
#include "tap.h"

int
main(void)
{
	struct vlm_config c, d;

	is_int(vlm_preset("medium", 32000, &c), V_OK, "medium preset");
	/* ARCHITECTURE.md: 134 M parameters with an untied 32,000 vocabulary */
	ok(vlm_param_count(&c) > 133000000 && vlm_param_count(&c) < 135000000,
	    "medium has about 134 M parameters (%llu)",
	    (unsigned long long)vlm_param_count(&c));
	is_int(vlm_preset("large", 32000, &c), V_OK, "large preset");
	ok(vlm_param_count(&c) > 370000000 && vlm_param_count(&c) < 378000000,
	    "large has about 374 M parameters (%llu)",
	    (unsigned long long)vlm_param_count(&c));
	is_int(vlm_preset("tiny", 4000, &c), V_OK, "tiny preset");
	is_int(c.vocab, 4096, "vocabulary padded to a multiple of 128");
	ok(vlm_param_count(&c) > 1000000 && vlm_param_count(&c) < 3000000,
	    "tiny has 1-3 M parameters with a 4 k vocabulary");
	is_int(vlm_preset("huge", 0, &c), V_ERR_ARG, "unknown preset refused");

	vlm_preset("small", 32000, &c);
	c.act = VLM_ACT_ERA;
	char *j = vlm_config_json(&c);
	ok(j != NULL, "config to JSON");
	is_int(vlm_config_from_json(j, &d), V_OK, "JSON back to config");
	ok(memcmp(&c, &d, sizeof c) == 0, "round trip keeps every field");
	free(j);

	is_int(vlm_config_from_json("{\"vocab\":128}", &d), V_ERR_FORMAT,
	    "missing keys refused");
	is_int(vlm_config_from_json("not json", &d), V_ERR_FORMAT, "not JSON refused");
	vlm_preset("tiny", 4000, &c);
	c.heads = 3;
	is_int(vlm_config_check(&c), V_ERR_ARG, "heads must divide the width");
	vlm_preset("tiny", 4000, &c);
	c.kv_heads = 3;
	is_int(vlm_config_check(&c), V_ERR_ARG, "kv heads must divide heads");
	vlm_preset("tiny", 4000, &c);
	c.vocab = 4000;
	is_int(vlm_config_check(&c), V_ERR_ARG, "vocabulary must be padded");
	vlm_preset("medium", 32000, &c);
	int n = vlm_layout(&c, NULL);
	is_int(n, 2 + 9 * 12 + 1, "medium has one tensor per weight");
	struct vlm_tensor *t = calloc((size_t)n, sizeof *t);
	vlm_layout(&c, t);
	is_str(t[0].name, "model.embed_tokens.weight", "embedding first");
	is_str(t[2].name, "model.layers.0.self_attn.q_proj.weight", "Hugging Face names");
	is_str(t[n - 1].name, "lm_head.weight", "head last");
	is_int(t[n - 1].offset + (size_t)t[n - 1].rows * t[n - 1].cols,
	    vlm_param_count(&c), "the layout covers every parameter once");
	free(t);
	return done_testing();
}
