// hello: a C program on the xv6 ABI. Prints its arguments, writes a file and reads it back,
// shows the kernel's memory use, and exits with 0 on success.
#include "xv6.h"

int main(int argc, char **argv) {
  printf("hello from C, pid %d, %d argument%s\n", getpid(), argc, argc == 1 ? "" : "s");
  for (int i = 0; i < argc; i++)
    printf("  argv[%d] = \"%s\"\n", i, argv[i]);

  const char *path = "hello.tmp";
  const char *text = "written by hello.c\n";
  int fd = open(path, O_CREATE | O_TRUNC | O_WRONLY);
  if (fd < 0) {
    fprintf(2, "hello: cannot create %s\n", path);
    exit(1);
  }
  int n = strlen(text);
  if (write(fd, text, n) != n) {
    fprintf(2, "hello: write error\n");
    exit(1);
  }
  close(fd);

  char buf[64];
  memset(buf, 0, sizeof(buf));
  fd = open(path, O_RDONLY);
  if (fd < 0 || read(fd, buf, sizeof(buf) - 1) != n || strcmp(buf, text) != 0) {
    fprintf(2, "hello: read back something else\n");
    exit(1);
  }
  close(fd);
  struct stat st;
  if (stat(path, &st) < 0 || st.type != T_FILE || st.size != (uint64)n) {
    fprintf(2, "hello: stat of %s is wrong\n", path);
    exit(1);
  }
  unlink(path);
  printf("wrote and read back %d bytes: %s", n, buf);

  char *p = malloc(1000);
  if (p == 0) {
    fprintf(2, "hello: malloc failed\n");
    exit(1);
  }
  strcpy(p, "heap ok");
  printf("%s at %p\n", p, p);
  free(p);

  struct meminfo m;
  if (meminfo(&m) == 0)
    printf("frames: %ld total, %ld free; %ld processes\n", m.total_frames, m.free_frames,
           m.nproc);
  exit(0);
}
