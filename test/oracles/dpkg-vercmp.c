/* Test oracle: dpkg's own version code (libdpkg, the library the dpkg binary is built from), in batch.
 * stdin lines: "A\tB"  -> stdout: "-1", "0" or "1" (dpkg_version_compare sign), or "E" if either
 * version fails parseversion() with an error (not a warning).
 * With argument "parse", stdin lines: "V" -> "OK", "W <message>" or "E <message>". */
#define LIBDPKG_VOLATILE_API 1
#include <dpkg/dpkg.h>
#include <dpkg/dpkg-db.h>
#include <dpkg/version.h>
#include <dpkg/error.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int parse(struct dpkg_version *v, const char *s, struct dpkg_error *err) {
  return parseversion(v, s, err);
}

int main(int argc, char **argv) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int parse_mode = argc > 1 && strcmp(argv[1], "parse") == 0;
  while ((n = getline(&line, &cap, stdin)) != -1) {
    if (n && line[n - 1] == '\n') line[--n] = 0;
    if (parse_mode) {
      struct dpkg_version v;
      struct dpkg_error err = DPKG_ERROR_INIT;
      if (parse(&v, line, &err) < 0) {
        printf("%s %s\n", err.type == DPKG_MSG_WARN ? "W" : "E", err.str);
        dpkg_error_destroy(&err);
      } else {
        printf("OK\n");
      }
      continue;
    }
    char *tab = strchr(line, '\t');
    if (!tab) { printf("E\n"); continue; }
    *tab = 0;
    struct dpkg_version a, b;
    struct dpkg_error ea = DPKG_ERROR_INIT, eb = DPKG_ERROR_INIT;
    int ra = parse(&a, line, &ea), rb = parse(&b, tab + 1, &eb);
    if ((ra < 0 && ea.type == DPKG_MSG_ERROR) || (rb < 0 && eb.type == DPKG_MSG_ERROR)) {
      printf("E\n");
    } else {
      int r = dpkg_version_compare(&a, &b);
      printf("%d\n", r < 0 ? -1 : r > 0 ? 1 : 0);
    }
    dpkg_error_destroy(&ea);
    dpkg_error_destroy(&eb);
  }
  return 0;
}
