/* api_sandbox.c — bounds on the work that C library functions do for a policy.
 *
 * The count hook (src/lua/policy.c) only sees VM instructions. A C function called from
 * Lua runs without it, so `("a"):rep(3000):find("a*a*a*b")` (hours of backtracking in
 * Lua's matcher), `(""):rep(1e15)` or `table.concat(t, "", 1, 1e12)` would hold a
 * worker forever. Every library function whose work is not bounded by its output size
 * is replaced here by a wrapper that computes an upper bound of that work from its
 * arguments and charges it to the same budget *before* calling the original: over the
 * budget, it raises and marks the meter exceeded, so the hook call answers 500 like an
 * instruction-budget overrun (pcall cannot hide it). Work proportional to the bytes it
 * produces (string.format, sub, upper, `..`, gsub's output) is charged by the allocator
 * in policy.c instead, which sees every byte a policy allocates.
 *
 * Units: 1 unit = 1 VM instruction ≈ PAT_STEPS matcher steps ≈ 64 bytes scanned (see
 * docs/policy-api.md, Limits, for the figures this rests on).
 *
 * Pattern bound (own analysis of Lua's backtracking matcher, not its code): the matcher
 * walks the pattern left to right; only quantified items branch. With cost(j) the
 * worst-case steps to match the suffix starting at item j at one subject position:
 *   single item, capture, %f:   1 + cost(j+1)
 *   x?                          1 + 2·cost(j+1)
 *   x*  x+  x-                  run + (run+1)·cost(j+1), where run is the longest run of
 *                               subject bytes in class x;
 *                               2·run + 1 + cost(j+1) when what follows must start with a
 *                               byte outside x (or is the end / `$`): every branch but
 *                               one then fails at its first byte
 *   %bxy, %1..%9                n + cost(j+1)
 * times the start positions tried (1 when anchored with ^, else n+1; gmatch and gsub
 * restart at most n+1 times in all). The bound is computed in O(pattern) with run = n,
 * and again with the real runs (O(n) per quantifier) only when the first is too high.
 */
#include <ctype.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lua/lapi.h"

#define PAT_STEPS 8.0   /* matcher steps per unit (measured: see docs/policy-api.md) */
#define BYTES_UNIT 64.0 /* bytes scanned or copied per unit */

/* ---- the meter ---- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The time limit counts the worker's CPU time, so a worker descheduled on a busy host is
 * not cut short: the first half of the limit is wall-clock time (a cheap vDSO read, and
 * CPU time <= wall time), the second half CPU time of this thread, read only once the
 * first half is gone. */
static int past_deadline(hg_lua_meter_t *m) {
  if (m->deadline_ns == 0) return 0;
  uint64_t now = now_ns();
  if (now <= m->deadline_ns) return 0;
  uint64_t half = m->limit_ns / 2;
  if (m->cpu_mark_ns == 0) {
    m->cpu_mark_ns = cpu_ns();
    m->deadline_ns = now + half;
    return 0;
  }
  uint64_t cpu = cpu_ns() - m->cpu_mark_ns;
  if (cpu >= half) return 1;
  m->deadline_ns = now + (half - cpu);
  return 0;
}

void hg__lua_meter_start(hg_lua_meter_t *m) {
  m->used = 0;
  m->exceeded = 0;
  m->cpu_mark_ns = 0;
  m->limit_ns = m->budget * 100; /* 100 ns per unit, at least 1 s */
  if (m->limit_ns < 1000000000u) m->limit_ns = 1000000000u;
  m->deadline_ns = now_ns() + m->limit_ns / 2;
}

int hg__lua_meter_check(hg_lua_meter_t *m) {
  if (m->exceeded) return -1;
  if (m->used > m->budget || past_deadline(m)) {
    m->exceeded = 1;
    return -1;
  }
  return 0;
}

void hg__lua_charge(lua_State *L, hg_lua_meter_t *m, double units, const char *what) {
  if (m->exceeded)
    luaL_error(L, "instruction budget exceeded (%I instructions)", (lua_Integer)m->budget);
  double left = m->used < m->budget ? (double)(m->budget - m->used) : 0;
  if (units > left) {
    m->exceeded = 1;
    m->used = m->budget + 1;
    char msg[160];
    snprintf(msg, sizeof(msg), "%s too expensive: ~%.3g instructions, %.0f left of the budget (%llu)",
             what, units, left, (unsigned long long)m->budget);
    luaL_error(L, "%s", msg);
  }
  m->used += (uint64_t)units;
  if (past_deadline(m)) {
    m->exceeded = 1;
    luaL_error(L, "policy time limit exceeded");
  }
}

static hg_lua_meter_t *meter(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }
static lua_CFunction orig(lua_State *L) { return lua_tocfunction(L, lua_upvalueindex(2)); }

/* ---- pattern cost ---- */

typedef struct {
  uint64_t w[4];
} cset_t;

static int cs_has(const cset_t *s, unsigned c) { return (int)((s->w[c >> 6] >> (c & 63)) & 1); }
static void cs_add(cset_t *s, unsigned c) { s->w[c >> 6] |= (uint64_t)1 << (c & 63); }
static void cs_or(cset_t *a, const cset_t *b) {
  for (int i = 0; i < 4; i++) a->w[i] |= b->w[i];
}
static int cs_disjoint(const cset_t *a, const cset_t *b) {
  for (int i = 0; i < 4; i++)
    if (a->w[i] & b->w[i]) return 0;
  return 1;
}

/* The %a … %x classes, computed once (the C locale, as the Lua state uses). */
static cset_t classes[26];
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

static void init_classes(void) {
  for (unsigned c = 0; c < 256; c++) {
    const struct { char l; int in; } t[] = {
        {'a', isalpha((int)c)}, {'c', iscntrl((int)c)}, {'d', isdigit((int)c)},
        {'g', isgraph((int)c)}, {'l', islower((int)c)}, {'p', ispunct((int)c)},
        {'s', isspace((int)c)}, {'u', isupper((int)c)}, {'w', isalnum((int)c)},
        {'x', isxdigit((int)c)}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
      if (t[i].in) cs_add(&classes[t[i].l - 'a'], c);
  }
}

/* The set of `%<l>`: a class, its complement (upper case), or the literal byte. */
static void escape_set(unsigned l, cset_t *out) {
  unsigned lower = (unsigned)tolower((int)l);
  memset(out, 0, sizeof(*out));
  if (strchr("acdglpsuwx", (int)lower) != NULL && lower != 0) {
    *out = classes[lower - 'a'];
    if (lower != l)
      for (int i = 0; i < 4; i++) out->w[i] = ~out->w[i];
  } else {
    cs_add(out, l);
  }
}

/* One pattern item. */
enum { IT_END, IT_BAD, IT_CLASS, IT_ZERO, IT_SCAN, IT_DOLLAR };
typedef struct {
  int kind;  /* IT_* */
  char quant; /* for IT_CLASS: 0, '?', '*', '+', '-' */
  cset_t set; /* IT_CLASS: the bytes it matches; IT_SCAN (%b): its first byte */
  const char *next;
} item_t;

/* Parses the item at p (pattern ends at pe) into *it; it->next is where the next one
 * starts. A malformed item is IT_BAD: the matcher raises when it gets there. */
static void parse_item(const char *p, const char *pe, item_t *it) {
  memset(it, 0, sizeof(*it));
  if (p >= pe) {
    it->kind = IT_END;
    return;
  }
  const char *q = p + 1;
  switch (*p) {
  case '(':
    it->kind = IT_ZERO;
    it->next = (q < pe && *q == ')') ? q + 1 : q;
    return;
  case ')':
    it->kind = IT_ZERO;
    it->next = q;
    return;
  case '$':
    if (q == pe) {
      it->kind = IT_DOLLAR;
      it->next = q;
      return;
    }
    break;
  case '%':
    if (q >= pe) {
      it->kind = IT_BAD;
      return;
    }
    if (*q == 'b') {
      if (q + 2 >= pe) {
        it->kind = IT_BAD;
        return;
      }
      it->kind = IT_SCAN;
      cs_add(&it->set, (unsigned char)q[1]);
      it->next = q + 3;
      return;
    }
    if (*q == 'f') {
      const char *r = q + 1;
      if (r >= pe || *r != '[') {
        it->kind = IT_BAD;
        return;
      }
      item_t inner;
      parse_item(r, pe, &inner);
      if (inner.kind == IT_BAD) {
        it->kind = IT_BAD;
        return;
      }
      it->kind = IT_ZERO;
      it->next = inner.quant ? inner.next - 1 : inner.next; /* %f takes no quantifier */
      return;
    }
    if (*q >= '0' && *q <= '9') {
      it->kind = IT_SCAN; /* a back reference: up to n bytes compared */
      memset(&it->set, 0xff, sizeof(it->set));
      it->next = q + 1;
      return;
    }
    escape_set((unsigned char)*q, &it->set);
    q++;
    break;
  case '[': {
    int neg = q < pe && *q == '^';
    if (neg) q++;
    const char *start = q; /* the first byte is always a member, even ']' */
    do {
      if (q >= pe) {
        it->kind = IT_BAD;
        return;
      }
      if (*q++ == '%' && q < pe) q++;
    } while (q >= pe || *q != ']');
    /* members: start .. q-1 */
    for (const char *r = start; r < q; r++) {
      if (*r == '%' && r + 1 < q) {
        cset_t e;
        escape_set((unsigned char)r[1], &e);
        cs_or(&it->set, &e);
        r++;
      } else if (r + 2 < q && r[1] == '-') {
        for (unsigned c = (unsigned char)r[0]; c <= (unsigned char)r[2]; c++) cs_add(&it->set, c);
        r += 2;
      } else {
        cs_add(&it->set, (unsigned char)*r);
      }
    }
    if (neg)
      for (int i = 0; i < 4; i++) it->set.w[i] = ~it->set.w[i];
    q++; /* the ']' */
    break;
  }
  case '.':
    memset(&it->set, 0xff, sizeof(it->set));
    break;
  default:
    cs_add(&it->set, (unsigned char)*p);
    break;
  }
  it->kind = IT_CLASS;
  if (q < pe && strchr("?*+-", *q) != NULL && *q != 0) it->quant = *q++;
  it->next = q;
}

/* What the suffix at p must start with: 1 and *first filled when every match of it
 * consumes a first byte from *first, or it can only match at the subject's end (the
 * set is then empty); 0 when it may match the empty string or anything. */
static int first_set(const char *p, const char *pe, cset_t *first) {
  item_t it;
  for (;;) {
    parse_item(p, pe, &it);
    if (it.kind == IT_ZERO && *p != '%') { /* captures consume nothing */
      p = it.next;
      continue;
    }
    break;
  }
  memset(first, 0, sizeof(*first));
  if (it.kind == IT_END) return 1; /* the match succeeds on the first branch */
  if (it.kind == IT_DOLLAR) return 1;
  if (it.kind == IT_CLASS && (it.quant == 0 || it.quant == '+')) {
    *first = it.set;
    return 1;
  }
  if (it.kind == IT_SCAN && *p == '%' && p[1] == 'b') {
    *first = it.set;
    return 1;
  }
  return 0;
}

static double longest_run(const cset_t *set, const unsigned char *s, size_t n) {
  size_t best = 0, cur = 0;
  for (size_t i = 0; i < n; i++) {
    cur = cs_has(set, s[i]) ? cur + 1 : 0;
    if (cur > best) best = cur;
  }
  return (double)best;
}

static double count_in(const cset_t *set, const unsigned char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += (size_t)cs_has(set, s[i]);
  return (double)k;
}

/* Upper bound of matcher steps for one start position, with run = n (s == NULL) or the
 * subject's real runs. A branch of x* / x+ / x- whose next subject byte cannot start
 * the rest fails at once, so only branches at bytes in the rest's first set (and one at
 * the end) go deep. */
static double suffix_cost(const char *p, const char *pe, const unsigned char *s, size_t n) {
  double A = 0, B = 1; /* cost = A + B·cost(rest) */
  item_t it;
  for (;;) {
    parse_item(p, pe, &it);
    if (it.kind == IT_END || it.kind == IT_BAD) break;
    double a = 1, b = 1;
    if (it.kind == IT_SCAN) {
      a = (double)n + 1;
    } else if (it.kind == IT_CLASS && it.quant == '?') {
      b = 2;
    } else if (it.kind == IT_CLASS && it.quant != 0) {
      double run = s ? longest_run(&it.set, s, n) : (double)n;
      cset_t first;
      a = 2 * run + 1;
      if (!first_set(it.next, pe, &first)) b = run + 1;
      else if (!cs_disjoint(&first, &it.set)) b = s ? 1 + (count_in(&first, s, n) < run ? count_in(&first, s, n) : run) : run + 1;
    }
    A += B * a;
    B *= b;
    if (B > 1e30) return 1e30;
    p = it.next;
  }
  return A + B;
}

/* A pattern whose only item that can fail is its first (captures aside), e.g. "[^&]+",
 * "(%w+)=?(.*)": every start either fails on its first byte or matches without
 * backtracking (the greedy first branch of each later x* succeeds), and gmatch/gsub
 * resume after the match, so the whole scan is linear. */
static int linear_pattern(const char *p, const char *pe) {
  item_t it;
  int fallible = 0;
  for (; p < pe; p = it.next) {
    parse_item(p, pe, &it);
    if (it.kind == IT_ZERO && *p != '%') continue; /* captures */
    if (it.kind != IT_CLASS) return 0;
    if (it.quant == 0 || it.quant == '+') {
      if (fallible++) return 0;
    } else if (fallible == 0 && it.quant != '?') {
      fallible = 1; /* x* / x- first: matches at every start, the rest must not fail */
    }
  }
  return 1;
}

double hg__lua_pattern_cost(const char *subj, size_t n, const char *pat, size_t m, int gmatch) {
  pthread_once(&classes_once, init_classes);
  const char *pe = pat + m;
  int anchor = !gmatch && m > 0 && *pat == '^';
  if (anchor) pat++;
  double starts = anchor ? 1 : (double)n + 1;
  if (linear_pattern(pat, pe)) return starts * ((double)(pe - pat) + 2) + 2 * (double)n;
  double cost = starts * suffix_cost(pat, pe, NULL, n);
  if (cost > 4096 * ((double)n + 1)) { /* worth a look at the subject */
    cset_t first;
    if (!anchor && first_set(pat, pe, &first) && !(first.w[0] == 0 && first.w[1] == 0 && first.w[2] == 0 && first.w[3] == 0))
      starts = count_in(&first, (const unsigned char *)subj, n) + 1; /* other starts fail at once */
    double tight = (double)n + starts * suffix_cost(pat, pe, (const unsigned char *)subj, n);
    if (tight < cost) cost = tight;
  }
  return cost;
}

/* string.find with plain=true or a pattern without specials: a memchr+memcmp scan. */
static double plain_cost(size_t n, size_t m) { return (double)n * (1.0 + (double)(m < n ? m : n) / 16.0); }

static int has_specials(const char *p, size_t m) {
  for (size_t i = 0; i < m; i++)
    if (strchr("^$*+?.([%-", p[i]) != NULL && p[i] != 0) return 1;
  return 0;
}

/* find, match, gmatch, gsub: upvalue 3 tells which (0 find, 1 match, 2 gmatch, 3 gsub). */
static int w_pattern(lua_State *L) {
  size_t n, m;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *p = luaL_checklstring(L, 2, &m);
  int which = (int)lua_tointeger(L, lua_upvalueindex(3));
  double units;
  if (which == 0 && (lua_toboolean(L, 4) || !has_specials(p, m))) units = plain_cost(n, m) / BYTES_UNIT;
  else units = hg__lua_pattern_cost(s, n, p, m, which == 2) / PAT_STEPS;
  hg__lua_charge(L, meter(L), units, "pattern");
  return orig(L)(L);
}

/* string.rep: Lua's loop runs n times even when s and sep are empty (no allocation for
 * the allocator to charge), so `(""):rep(1e15)` would spin: answer that directly. */
static int w_rep(lua_State *L) {
  size_t l, lsep = 0;
  luaL_checklstring(L, 1, &l);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &lsep);
  if (n > 0 && l + lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (n > 0) hg__lua_charge(L, meter(L), (double)n / PAT_STEPS + (double)n * (double)(l + lsep) / BYTES_UNIT, "string.rep");
  return orig(L)(L);
}

/* table functions whose loop runs over a range: concat(t, sep, i, j), unpack(t, i, j),
 * insert/remove (shift up to #t), move(a, f, e, t). Upvalue 3: which. */
static int w_range(lua_State *L) {
  int which = (int)lua_tointeger(L, lua_upvalueindex(3));
  lua_Integer i, j;
  switch (which) {
  case 0: /* concat */
    i = luaL_optinteger(L, 3, 1);
    j = lua_isnoneornil(L, 4) ? luaL_len(L, 1) : luaL_checkinteger(L, 4);
    break;
  case 1: /* unpack */
    i = luaL_optinteger(L, 2, 1);
    j = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
    break;
  case 2: /* move */
    i = luaL_checkinteger(L, 2);
    j = luaL_checkinteger(L, 3);
    break;
  default: /* insert, remove */
    i = 1;
    j = luaL_len(L, 1);
    break;
  }
  double count = j >= i ? (double)j - (double)i + 1 : 0;
  hg__lua_charge(L, meter(L), count, "table operation");
  return orig(L)(L);
}

/* Functions that scan their string arguments without allocating in proportion:
 * charged by the bytes of arguments 1 and 2 (strings only). Upvalue 3: bytes per unit. */
static int w_scan(lua_State *L) {
  double per = (double)lua_tointeger(L, lua_upvalueindex(3));
  double bytes = 0;
  for (int i = 1; i <= 2; i++)
    if (lua_type(L, i) == LUA_TSTRING) bytes += (double)lua_rawlen(L, i);
  hg__lua_charge(L, meter(L), bytes / per, "string scan");
  return orig(L)(L);
}

/* table.sort's comparator: every comparison is charged (the default `<` on long strings
 * costs their length), then the policy's comparator, if any, runs (its instructions are
 * counted by the hook as usual). A comparator that is not a consistent order makes Lua
 * raise "invalid order function"; it cannot make sort loop. */
static int counted_lt(lua_State *L) {
  double units = 1;
  for (int i = 1; i <= 2; i++)
    if (lua_type(L, i) == LUA_TSTRING) units += (double)lua_rawlen(L, i) / BYTES_UNIT;
  hg__lua_charge(L, meter(L), units, "table.sort");
  if (lua_isnil(L, lua_upvalueindex(2))) {
    lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

static int w_sort(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  hg__lua_charge(L, meter(L), (double)luaL_len(L, 1), "table.sort");
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, counted_lt, 2);
  lua_replace(L, 2);
  return orig(L)(L);
}

/* collectgarbage("collect"/"step"/…) walks the whole heap: charged by its size. */
static int w_gc(lua_State *L) {
  const char *opt = luaL_optstring(L, 1, "collect");
  hg_lua_meter_t *m = meter(L);
  if (strcmp(opt, "count") != 0 && strcmp(opt, "isrunning") != 0)
    hg__lua_charge(L, m, 1 + (m->mem ? (double)*m->mem / BYTES_UNIT : 0), "collectgarbage");
  return orig(L)(L);
}

/* load: text chunks only (a crafted binary chunk can corrupt the VM). */
static int w_load(lua_State *L) {
  lua_settop(L, 4);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  return orig(L)(L);
}

/* io.lines() without a file name reads the gateway's stdin. */
static int w_lines(lua_State *L) {
  if (lua_isnoneornil(L, 1)) return luaL_error(L, "io.lines() without a file name is not available to policies");
  return orig(L)(L);
}

static int refused(lua_State *L) {
  return luaL_error(L, "%s is not available to policies (it could block or stop the worker)",
                    lua_tostring(L, lua_upvalueindex(1)));
}

/* Replaces tbl[name] (tbl at the top of the stack) by a closure of fn over (meter,
 * original, extra). */
static void wrap(lua_State *L, hg_lua_meter_t *m, const char *name, lua_CFunction fn, lua_Integer extra) {
  lua_getfield(L, -1, name);
  lua_CFunction o = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  if (o == NULL) return; /* absent in this build */
  lua_pushlightuserdata(L, m);
  lua_pushcfunction(L, o);
  lua_pushinteger(L, extra);
  lua_pushcclosure(L, fn, 3);
  lua_setfield(L, -2, name);
}

static void refuse(lua_State *L, const char *lib, const char *name) {
  lua_pushfstring(L, "%s.%s", lib, name);
  lua_pushcclosure(L, refused, 1);
  lua_setfield(L, -2, name);
}

static void wrap_string(lua_State *L, hg_lua_meter_t *m) {
  static const char *const pat[] = {"find", "match", "gmatch", "gsub"};
  for (int i = 0; i < 4; i++) wrap(L, m, pat[i], w_pattern, i);
  wrap(L, m, "rep", w_rep, 0);
  wrap(L, m, "byte", w_scan, 4);
  wrap(L, m, "unpack", w_scan, 4); /* string.unpack */
  wrap(L, m, "pack", w_scan, 4);
}

void hg__lua_sandbox(lua_State *L, hg_lua_meter_t *m) {
  lua_getglobal(L, "string");
  wrap_string(L, m);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump"); /* useless without binary chunks */
  lua_pop(L, 1);

  lua_getglobal(L, "table");
  static const char *const rng[] = {"concat", "unpack", "move", "insert", "remove"};
  for (int i = 0; i < 5; i++) wrap(L, m, rng[i], w_range, i);
  wrap(L, m, "sort", w_sort, 0);
  lua_pop(L, 1);

  lua_getglobal(L, "utf8");
  if (lua_istable(L, -1)) {
    wrap(L, m, "len", w_scan, (lua_Integer)BYTES_UNIT);
    wrap(L, m, "offset", w_scan, (lua_Integer)BYTES_UNIT);
    wrap(L, m, "codepoint", w_scan, 4);
  }
  lua_pop(L, 1);

  lua_pushglobaltable(L);
  wrap(L, m, "tonumber", w_scan, (lua_Integer)BYTES_UNIT);
  wrap(L, m, "collectgarbage", w_gc, 0);
  wrap(L, m, "load", w_load, 0);
  lua_pushnil(L);
  lua_setfield(L, -2, "dofile"); /* binary chunks, and reads stdin without a name */
  lua_pop(L, 1);

  /* Functions that block the worker or end the process. */
  lua_getglobal(L, "os");
  if (lua_istable(L, -1)) {
    refuse(L, "os", "exit");
    refuse(L, "os", "execute");
  }
  lua_pop(L, 1);
  lua_getglobal(L, "io");
  if (lua_istable(L, -1)) {
    refuse(L, "io", "popen");
    refuse(L, "io", "read"); /* stdin */
    refuse(L, "io", "input");
    /* stdout carries the access log, one JSON line per request: a policy writing there
     * would corrupt (or forge) it. print is routed to the operational log (policy.c). */
    refuse(L, "io", "write");
    refuse(L, "io", "output");
    wrap(L, m, "lines", w_lines, 0);
    lua_pushnil(L);
    lua_setfield(L, -2, "stdout");
    lua_pushnil(L);
    lua_setfield(L, -2, "stdin");
  }
  lua_pop(L, 1);
  /* debug.sethook would remove the budget, debug.getupvalue would hand out the
   * unguarded originals above: only traceback stays. */
  lua_getglobal(L, "debug");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "traceback");
    lua_newtable(L);
    lua_insert(L, -2);
    lua_setfield(L, -2, "traceback");
    lua_setglobal(L, "debug");
  }
  lua_pop(L, 1);
}

/* ---- test access (lib/hlsgate.so only, never in the server) ---- */

/* hg._sandbox(budget) -> table with find, match, gmatch, gsub, rep, byte, concat, sort,
 * unpack, used(), cost(s, p [, gmatch]) over a fresh meter of `budget` units. */
static int l_used(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)((hg_lua_meter_t *)lua_touserdata(L, lua_upvalueindex(1)))->used);
  return 1;
}

static int l_cost(lua_State *L) {
  size_t n, m;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *p = luaL_checklstring(L, 2, &m);
  lua_pushnumber(L, hg__lua_pattern_cost(s, n, p, m, lua_toboolean(L, 3)) / PAT_STEPS);
  return 1;
}

int hg__lua_sandbox_for_tests(lua_State *L) {
  lua_Integer budget = luaL_checkinteger(L, 1);
  hg_lua_meter_t *m = lua_newuserdatauv(L, sizeof(*m), 0);
  memset(m, 0, sizeof(*m));
  m->budget = (uint64_t)budget;
  int ud = lua_gettop(L);
  lua_newtable(L);
  /* copies of the real functions, then wrapped in place */
  static const char *const sfn[] = {"find", "match", "gmatch", "gsub", "rep", "byte"};
  lua_getglobal(L, "string");
  for (int i = 0; i < 6; i++) {
    lua_getfield(L, -1, sfn[i]);
    lua_setfield(L, -3, sfn[i]);
  }
  lua_pop(L, 1);
  wrap_string(L, m); /* the string ones */
  static const char *const tfn[] = {"concat", "unpack", "sort"};
  lua_getglobal(L, "table");
  for (int i = 0; i < 3; i++) {
    lua_getfield(L, -1, tfn[i]);
    lua_setfield(L, -3, tfn[i]);
  }
  lua_pop(L, 1);
  wrap(L, m, "concat", w_range, 0);
  wrap(L, m, "unpack", w_range, 1);
  wrap(L, m, "sort", w_sort, 0);
  /* keep the meter alive with the table: every closure holds it as light userdata */
  lua_newtable(L);
  lua_pushvalue(L, ud);
  lua_setfield(L, -2, "__meter");
  lua_setmetatable(L, -2);
  lua_pushlightuserdata(L, m);
  lua_pushcclosure(L, l_used, 1);
  lua_setfield(L, -2, "used");
  lua_pushcfunction(L, l_cost);
  lua_setfield(L, -2, "cost");
  return 1;
}
