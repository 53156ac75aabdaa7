/* SPDX-License-Identifier: MIT */
/*
 * wl-clone SIZE
 *
 * Children that copy the address space without fork()'s atfork handlers, which the kernel does
 * not register with any userfaultfd: where the parent had evicted a page they would read
 * zeroes. The parent fills SIZE bytes, then, each time with half of it evicted again, makes a
 * child of each kind, which checks every page and exits:
 *   clone        glibc's clone() without CLONE_VM, on a stack of its own
 *   clone-files  ... sharing the fd table (CLONE_FILES): the child then closefrom(3)s, and the
 *                shim's fds, the parent's too, must survive it
 *   clone-vfork  ... with CLONE_VFORK: the parent waits until the child has exited
 *   clone-fails  ... with flags the kernel refuses (CLONE_SIGHAND without CLONE_VM): EINVAL,
 *                and the parent goes on being evicted
 *   SYS_clone    clone, clone3 and fork by number through syscall(), the child on the
 *   SYS_clone3   caller's stack (Chromium's zygote launch)
 *   SYS_fork
 *   _Fork        glibc's fork() without the handlers
 *   moz-clone    as Firefox starts its sandboxed processes: this program keeps its own list of
 *                atfork handlers (it defines __register_atfork(), and exports it, so the
 *                shim's registration lands in it too), runs the prepare handlers, clone()s on a
 *                4 KiB stack whose function longjmp()s back to the caller's, then runs the
 *                child or parent handlers.
 * The parent then checks every page itself and goes on being evicted.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wl-common.h"

static char *region;
static size_t nr_pages;

static void check_all(const char *what)
{
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check(what, region + p * WL_PAGE_SIZE, p, 0, 0, 0);
}

static _Noreturn void child_checks(const char *what)
{
	wl_prog = "wl-clone(child)";
	check_all(what);
	fflush(stdout);
	_exit(0);
}

static int clone_child_main(void *what)
{
	child_checks(what);
}

static int clone_files_child_main(void *what)
{
	wl_prog = "wl-clone(child)";
	check_all(what);
	closefrom(3);
	_exit(0);
}

/* Open fds of ours from 3 up: the shim's, which no close of the program may take. */
static int count_fds(void)
{
	int n = 0;

	for (int fd = 3; fd < 4096; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

/* ---- Firefox's pattern (mozglue's pthread_atfork interposer, SandboxLaunch's clone) ---- */

typedef int (*register_atfork_fn)(void (*)(void), void (*)(void), void (*)(void), void *);

static struct {
	void (*prepare)(void), (*parent)(void), (*child)(void);
} handlers[32];
static int nr_handlers;

int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void),
		      void *dso)
{
	static register_atfork_fn real;

	if (!real)
		real = (register_atfork_fn)dlsym(RTLD_NEXT, "__register_atfork");
	if (!real)
		return ENOSYS;
	if (nr_handlers < (int)(sizeof(handlers) / sizeof(handlers[0])))
		handlers[nr_handlers++] = (typeof(handlers[0])){prepare, parent, child};
	return real(prepare, parent, child, dso);
}

static int moz_clone_callee(void *ctx)
{
	longjmp(*(jmp_buf *)ctx, 1);
}

static pid_t moz_do_clone(jmp_buf *ctx)
{
	char mini_stack[4096] __attribute__((aligned(16))); /* on the caller's stack, as Firefox's */

	return clone(moz_clone_callee, mini_stack + sizeof(mini_stack), CLONE_FS | SIGCHLD, ctx);
}

static pid_t moz_fork_with_flags(void)
{
	jmp_buf ctx;

	if (setjmp(ctx) == 0)
		return moz_do_clone(&ctx);
	return 0;
}

static pid_t moz_clone(void)
{
	pid_t pid;

	if (nr_handlers == 0 && getenv("LD_PRELOAD"))
		wl_die("no atfork handler reached this program's __register_atfork()");
	for (int i = nr_handlers; i-- > 0;)
		if (handlers[i].prepare)
			handlers[i].prepare();
	pid = moz_fork_with_flags();
	for (int i = 0; i < nr_handlers; i++) {
		void (*h)(void) = pid == 0 ? handlers[i].child : handlers[i].parent;

		if (h)
			h();
	}
	if (pid == 0)
		child_checks("child of moz-clone");
	return pid;
}

/* ---- the kinds ---- */

/* The head of clone3()'s struct clone_args. */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static pid_t make_child(const char *kind)
{
	static char stack[256 << 10] __attribute__((aligned(16)));
	struct clone3_args args = {.exit_signal = SIGCHLD};
	pid_t pid;

	if (strcmp(kind, "clone") == 0)
		return clone(clone_child_main, stack + sizeof(stack), CLONE_FS | SIGCHLD,
			     (void *)"child of clone()");
	if (strcmp(kind, "clone-files") == 0)
		return clone(clone_files_child_main, stack + sizeof(stack), CLONE_FILES | SIGCHLD,
			     (void *)"child of clone(CLONE_FILES)");
	if (strcmp(kind, "clone-vfork") == 0)
		return clone(clone_child_main, stack + sizeof(stack), CLONE_VFORK | SIGCHLD,
			     (void *)"child of clone(CLONE_VFORK)");
	if (strcmp(kind, "clone-fails") == 0) {
		pid = clone(clone_child_main, stack + sizeof(stack), CLONE_SIGHAND | SIGCHLD,
			    (void *)"child of a refused clone()");
		if (pid >= 0 || errno != EINVAL)
			wl_die("clone(CLONE_SIGHAND) without CLONE_VM: %d (%m), not EINVAL", pid);
		return 0; /* no child */
	}
	if (strcmp(kind, "moz-clone") == 0)
		return moz_clone();
	if (strcmp(kind, "SYS_clone") == 0)
		pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
	else if (strcmp(kind, "SYS_clone3") == 0)
		pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	else if (strcmp(kind, "SYS_fork") == 0)
		pid = (pid_t)syscall(SYS_fork);
	else
		pid = _Fork();
	if (pid == 0)
		child_checks(kind);
	return pid;
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = {"clone",	 "clone-files", "clone-vfork",
					    "clone-fails", "SYS_clone",	  "SYS_clone3",
					    "SYS_fork",	 "_Fork",	  "moz-clone"};

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	if (!nr_pages)
		wl_die("bad SIZE");
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
	wl_phase("clone");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int status, fds;
		size_t out;
		pid_t pid;

		wl_wait_evicted(kinds[i], region, nr_pages * WL_PAGE_SIZE, 500,
				wl_expect_eviction(), 30);
		out = wl_nonresident_pages(region, nr_pages * WL_PAGE_SIZE);
		fds = count_fds();
		pid = make_child(kinds[i]);
		if (pid < 0)
			wl_die("%s: %m", kinds[i]);
		if (pid == 0) {
			wl_log("%s: refused, as it must be", kinds[i]);
			continue;
		}
		if (waitpid(pid, &status, 0) != pid)
			wl_die("%s: waitpid: %m", kinds[i]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			wl_mismatch("%s: the child ended with status %#x", kinds[i], status);
		if (count_fds() != fds)
			wl_mismatch("%s: %d fds from 3 up before, %d after: the child closed the "
				    "parent's",
				    kinds[i], fds, count_fds());
		wl_log("%s: the child found all %zu pages right (%zu were evicted before)",
		       kinds[i], nr_pages, out);
	}
	check_all("parent after the children");
	wl_log("parent: all %zu pages verified", nr_pages);
	return 0;
}
