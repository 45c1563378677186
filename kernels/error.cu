// error.cu: the backend's per-thread error message.
#include <cstdarg>
#include <cstdio>

#include "cuda_common.cuh"

static thread_local char msg[1024];

void vk_set_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
}

const char *vk_last_error(void)
{
	return msg[0] ? msg : "no error";
}
