/* hls_internal.h — helpers shared by the C files of src/hls (not part of the API). */
#ifndef HG_HLS_HLS_INTERNAL_H
#define HG_HLS_HLS_INTERNAL_H

/* The blanks RFC 8216 lines may carry around values: space and tab. */
static inline int hg__hls_is_ws(char c) { return c == ' ' || c == '\t'; }

#endif
