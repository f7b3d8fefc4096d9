/* mirrorlab bench: the verifying-relay baseline.
 *
 * The least a proxy that verifies what it serves must do: receive into a 1 MiB buffer, hash
 * with OpenSSL's EVP interface, send; nothing else. It relays `GET /v2/<repo>/blobs/<digest>`
 * and `GET /v2/<repo>/manifests/<digest>` (the client's Accept passed on) from one registry,
 * a thread for each client connection, each thread with its own kept-alive HTTP/1.1
 * connection upstream. The last piece received is hashed before it is sent, and sent only
 * when the digest matches; on a mismatch (or a cut upstream) both connections are reset, so
 * the client never completes a wrong blob. Anything else is answered 404.
 *
 * Built by `mirrorlab bench` into its work directory (gcc -O2 relay.c -lcrypto -pthread); never
 * committed as a binary.
 *
 *     relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT      (listens on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER (1024 * 1024)
#define HEAD 16384

#define ACCEPT 2048

static const char *upstream_host, *upstream_port;
static __thread char *buffer;   /* this connection's, BUFFER bytes */
static __thread int upstream = -1;

/* Makes the coming close send RST: the peer sees an error, not an end. (A client's socket
 * is closed once, by its thread when it ends: closed here too, its number could meanwhile
 * go to another thread's new socket, which the second close would end.) */
static void arm_reset(int fd) {
    struct linger linger = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
}

static int send_all(int fd, const char *data, size_t size, int flags) {
    while (size > 0) {
        ssize_t sent = send(fd, data, size, MSG_NOSIGNAL | flags);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

/* Reads until the end of an HTTP head. Returns the head's length (its bytes, and any body
 * bytes read past it, are in head[0, *filled)), 0 on a clean end of stream, -1 on error. */
static ssize_t read_head(int fd, char *head, size_t *filled) {
    *filled = 0;
    for (;;) {
        if (*filled == HEAD - 1)
            return -1;
        ssize_t got = recv(fd, head + *filled, HEAD - 1 - *filled, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got == 0 && *filled == 0 ? 0 : -1;
        *filled += (size_t)got;
        head[*filled] = '\0';
        char *end = strstr(head, "\r\n\r\n");
        if (end != NULL)
            return end + 4 - head;
    }
}

/* The value of header `name` in `head`, looked for in its lines up to the blank one only
 * (what follows may be body bytes); when the header comes more than once, its values
 * joined with ", ". Copied into value; 0 when found and it fits, else value is unchanged. */
static int header(const char *head, const char *name, char *value, size_t size) {
    const char *end = strstr(head, "\r\n\r\n");
    size_t length = strlen(name), used = 0;
    char joined[HEAD];
    if (end == NULL)
        return -1;
    for (const char *line = strstr(head, "\r\n"); line != NULL && line < end;
         line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, length) != 0 || line[length] != ':')
            continue;
        const char *start = line + length + 1;
        while (*start == ' ' || *start == '\t')
            start++;
        size_t n = strcspn(start, "\r\n"), separator = used ? 2 : 0;
        if (used + separator + n >= size || used + separator + n >= sizeof joined)
            return -1;
        memcpy(joined + used, ", ", separator);
        memcpy(joined + used + separator, start, n);
        used += separator + n;
        joined[used] = '\0';
    }
    if (used == 0)
        return -1;
    memcpy(value, joined, used + 1);
    return 0;
}

static int connect_upstream(void) {
    struct addrinfo hints = {0}, *found;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(upstream_host, upstream_port, &hints, &found) != 0)
        return -1;
    int fd = socket(found->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static void drop_upstream(int hard) {
    if (upstream >= 0) {
        if (hard)
            arm_reset(upstream);
        close(upstream);
    }
    upstream = -1;
}

static int answer(int client, const char *status) {
    char line[128];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n", status);
    return send_all(client, line, (size_t)n, 0);
}

/* Sends the request upstream and reads the response head, on the kept-alive connection or,
 * when that one was closed meanwhile, on a new one. Returns the head length or -1. */
static ssize_t ask_upstream(const char *path, const char *accept, char *head,
                            size_t *filled) {
    char request[HEAD];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: mirrorlab-relay\r\n"
                     "Accept-Encoding: identity\r\n%s%s%s\r\n", path, upstream_host,
                     upstream_port, *accept ? "Accept: " : "", accept, *accept ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof request)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (upstream < 0 && (upstream = connect_upstream()) < 0)
            return -1;
        ssize_t length = -1;
        if (send_all(upstream, request, (size_t)n, 0) == 0)
            length = read_head(upstream, head, filled);
        if (length > 0)
            return length;
        drop_upstream(0);
    }
    return -1;
}

/* One blob or manifest by digest: 1 when the client connection can serve another request,
 * 0 when it ends. */
static int relay_blob(int client, const char *path, const char *digest, const char *accept) {
    char algorithm[16], expected[EVP_MAX_MD_SIZE * 2 + 1], value[64], head[HEAD];
    char type[256] = "application/octet-stream";
    const char *colon = strchr(digest, ':');
    if (colon == NULL || (size_t)(colon - digest) >= sizeof algorithm)
        return answer(client, "404 Not Found") == 0;
    memcpy(algorithm, digest, (size_t)(colon - digest));
    algorithm[colon - digest] = '\0';
    const EVP_MD *md = EVP_get_digestbyname(algorithm);
    if (md == NULL || strlen(colon + 1) != (size_t)EVP_MD_get_size(md) * 2)
        return answer(client, "404 Not Found") == 0;

    size_t filled;
    ssize_t length = ask_upstream(path, accept, head, &filled);
    if (length < 0)
        return answer(client, "502 Bad Gateway") == 0;
    int status = 0;
    sscanf(head, "HTTP/%*d.%*d %d", &status);
    long long total = -1;
    if (header(head, "Content-Length", value, sizeof value) == 0)
        total = atoll(value);
    header(head, "Content-Type", type, sizeof type); /* unchanged when absent or long */
    int upstream_closes = header(head, "Connection", value, sizeof value) == 0
                          && strcasecmp(value, "close") == 0;
    if (status != 200 || total < 0) {
        drop_upstream(0); /* its body is of no use: a new connection for the next one */
        return answer(client, status == 404 ? "404 Not Found" : "502 Bad Gateway") == 0;
    }

    char response[512];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                     "Content-Length: %lld\r\nDocker-Content-Digest: %s\r\n\r\n", type, total,
                     digest);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (n < 0 || (size_t)n >= sizeof response || context == NULL
        || EVP_DigestInit_ex(context, md, NULL) != 1) { /* e.g. md4 without the legacy provider */
        EVP_MD_CTX_free(context);
        drop_upstream(0);
        return answer(client, "502 Bad Gateway") == 0;
    }
    if (send_all(client, response, (size_t)n, MSG_MORE) < 0) {
        EVP_MD_CTX_free(context);
        drop_upstream(0);
        return 0;
    }

    long long received = (long long)filled - length;
    size_t pending = (size_t)received; /* body bytes that came with the head */
    if (received > total) {
        EVP_MD_CTX_free(context);
        drop_upstream(1);
        arm_reset(client);
        return 0;
    }
    memcpy(buffer, head + length, pending);
    int ok = 1;
    for (;;) {
        if (received < total && pending < BUFFER) {
            size_t want = BUFFER - pending;
            if ((long long)want > total - received)
                want = (size_t)(total - received);
            ssize_t got = recv(upstream, buffer + pending, want, 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) { /* cut before its end */
                ok = 0;
                break;
            }
            pending += (size_t)got;
            received += got;
        }
        if (EVP_DigestUpdate(context, buffer, pending) != 1) {
            ok = 0;
            break;
        }
        if (received == total) {
            unsigned char digest_bytes[EVP_MAX_MD_SIZE];
            unsigned int size = 0;
            if (EVP_DigestFinal_ex(context, digest_bytes, &size) != 1
                || size > EVP_MAX_MD_SIZE) {
                ok = 0;
                break;
            }
            expected[0] = '\0';
            for (unsigned int i = 0; i < size; i++)
                snprintf(expected + 2 * i, 3, "%02x", digest_bytes[i]);
            ok = strcmp(expected, colon + 1) == 0;
            if (ok && send_all(client, buffer, pending, 0) < 0)
                ok = -1;
            break;
        }
        if (send_all(client, buffer, pending, 0) < 0) {
            ok = -1; /* the client went away */
            break;
        }
        pending = 0;
    }
    EVP_MD_CTX_free(context);
    if (ok == 1) {
        if (upstream_closes)
            drop_upstream(0);
        return 1;
    }
    drop_upstream(1);
    if (ok == 0) {
        fprintf(stderr, "relay: %s: %s; connection cut\n", digest,
                received == total ? "digest mismatch" : "upstream ended early");
        arm_reset(client); /* closed by its thread */
    }
    return 0;
}

static const char *last(const char *text, const char *part) {
    const char *found = NULL;
    for (const char *at = strstr(text, part); at != NULL; at = strstr(at + 1, part))
        found = at;
    return found;
}

static void serve(int client) {
    char head[HEAD], method[16], path[4096];
    size_t filled;
    for (;;) {
        if (read_head(client, head, &filled) <= 0)
            return;
        if (sscanf(head, "%15s %4095s", method, path) != 2) {
            answer(client, "400 Bad Request");
            return;
        }
        char value[64], accept[ACCEPT] = "";
        int closes = header(head, "Connection", value, sizeof value) == 0
                     && strcasecmp(value, "close") == 0;
        header(head, "Accept", accept, sizeof accept); /* none passed on when absent or long */
        /* The last /blobs/ or /manifests/ of the path: a repository may be named either. */
        const char *blobs = last(path, "/blobs/"), *manifests = last(path, "/manifests/");
        const char *digest = NULL;
        if (blobs != NULL && (manifests == NULL || blobs > manifests))
            digest = blobs + strlen("/blobs/");
        else if (manifests != NULL)
            digest = manifests + strlen("/manifests/");
        int keep;
        if (strcmp(method, "GET") != 0 || strncmp(path, "/v2/", 4) != 0 || digest == NULL
            || strchr(digest, '/') != NULL || strchr(digest, '?') != NULL)
            keep = answer(client, "404 Not Found") == 0;
        else
            keep = relay_blob(client, path, digest, accept);
        if (!keep || closes)
            return;
    }
}

static void *connection(void *argument) {
    int client = (int)(intptr_t)argument;
    buffer = malloc(BUFFER);
    if (buffer != NULL)
        serve(client);
    drop_upstream(0);
    close(client);
    free(buffer);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n", argv[0]);
        return 2;
    }
    upstream_host = argv[2];
    upstream_port = argv[3];
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(argv[1]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0
        || listen(listener, 512) < 0) {
        perror("relay: listen");
        return 1;
    }
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) {
            if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK) {
                perror("relay: accept");
                return 1;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(10000); /* out of descriptors or memory for now: threads will end */
            continue; /* EINTR, ECONNABORTED, ...: the next one */
        }
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attributes, 256 * 1024);
        pthread_t thread;
        if (pthread_create(&thread, &attributes, connection, (void *)(intptr_t)client) != 0) {
            perror("relay: thread");
            close(client);
        }
        pthread_attr_destroy(&attributes);
    }
}
