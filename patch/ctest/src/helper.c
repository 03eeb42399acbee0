/* Blocking socket code as a C library would write it: no knowledge of greenlets.
 * verdant-patch's tests call these from greenlets to check that the hooks make them
 * cooperative. Each returns a count or fd on success and -errno on failure. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* A blocking TCP connection to ip:port. */
int ctest_connect(const char *ip, int port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

/* One blocking recv into the caller's buffer. */
long ctest_recv(int fd, char *buf, long len) {
    ssize_t n = recv(fd, buf, (size_t)len, 0);
    return n < 0 ? -errno : (long)n;
}

/* One blocking recv into a local buffer whose size the compiler knows, with a length it
 * does not: _FORTIFY_SOURCE turns this call into __recv_chk. Copies what came to `out`. */
long ctest_recv_checked(int fd, char *out, long len) {
    char local[256];
    if (len > (long)sizeof local)
        len = (long)sizeof local;
    ssize_t n = recv(fd, local, (size_t)len, 0);
    if (n < 0)
        return -errno;
    memcpy(out, local, (size_t)n);
    return (long)n;
}

/* Connects to ip:port, sends `request`, reads until the peer closes (or `outlen` bytes).
 * Returns the byte count read, or -errno. */
long ctest_fetch(const char *ip, int port, const char *request, char *out, long outlen) {
    int fd = ctest_connect(ip, port);
    if (fd < 0)
        return fd;
    size_t want = strlen(request);
    if (send(fd, request, want, 0) != (ssize_t)want) {
        int error = errno;
        close(fd);
        return -error;
    }
    long got = 0;
    while (got < outlen) {
        ssize_t n = recv(fd, out + got, (size_t)(outlen - got), 0);
        if (n < 0) {
            int error = errno;
            close(fd);
            return -error;
        }
        if (n == 0)
            break;
        got += n;
    }
    close(fd);
    return got;
}
