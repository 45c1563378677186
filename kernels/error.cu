// error.cu: the backend's per-thread error message, and the debugging
// switch VESPER_CUDA_SYNC.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

// Appends " (what)" to the current message: the trainer says which pass
// and layer a failing launch belonged to.
void vk_add_context(const char *fmt, ...)
{
	size_t n = strlen(msg);
	if (n + 4 >= sizeof msg)
		return;
	msg[n++] = ' ';
	msg[n++] = '(';
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof msg - n - 1, fmt, ap);
	va_end(ap);
	n = strlen(msg);
	if (n + 1 < sizeof msg) {
		msg[n] = ')';
		msg[n + 1] = '\0';
	}
}

// A kernel that faults is reported by whatever call synchronizes next,
// which may be far from it.  With VESPER_CUDA_SYNC=1 in the environment
// every launch is waited for, so the message names the kernel at fault
// (slow: for finding a fault, not for training).
static int sync_flag(void)
{
	const char *e = getenv("VESPER_CUDA_SYNC");
	return e != nullptr && *e != '\0' && strcmp(e, "0") != 0;
}

const int vk_sync_launches = sync_flag();
