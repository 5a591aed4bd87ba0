// kquants.cu: not yet written.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif
