/*
 * barepm.c: tests/barepm -raw in C, for BenchmarkUserspaceDecision with
 * MPTCPD_BENCH_US_BARE=c. It tells whether the floor of a userspace path
 * manager on a machine is the language's or the crossing's: one thread
 * blocks in recv(2) on the mptcp_pm events group and, for every client
 * connection of the address family of -local that becomes established,
 * sends one SUBFLOW_CREATE from -local to the connection's remote address
 * without waiting for the answer. Nothing else.
 *
 *   barepm-c -family ID -group ID -local 192.0.2.17 [-ifindex N] [-id N]
 *
 * The family and the events group are resolved by the caller (they are the
 * same in every network namespace). It prints "ready" once subscribed and,
 * after SIGTERM or SIGINT, how many requests it sent. IPv4 only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The mptcp_pm numbers this program uses (include/uapi/linux/mptcp_pm.h). */
enum {
	EVENT_ESTABLISHED = 2,
	CMD_SUBFLOW_CREATE = 10,

	ATTR_ADDR = 1,
	ATTR_TOKEN = 4,
	ATTR_ADDR_REMOTE = 6,

	ADDR_FAMILY = 1,
	ADDR_ID = 2,
	ADDR_ADDR4 = 3,
	ADDR_PORT = 5,
	ADDR_IF_IDX = 7,

	EV_TOKEN = 1,
	EV_FAMILY = 2,
	EV_DADDR4 = 7,
	EV_DPORT = 10, /* network byte order */
	EV_SERVER_SIDE = 18,
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* attr appends an attribute at p and returns the end of it. */
static char *attr(char *p, uint16_t type, const void *data, uint16_t len)
{
	struct nlattr *a = (struct nlattr *)p;

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy(p + NLA_HDRLEN, data, len);
	memset(p + NLA_HDRLEN + len, 0, NLA_ALIGN(len) - len);
	return p + NLA_HDRLEN + NLA_ALIGN(len);
}

/* nest_end closes the nest opened at start, ending at end. */
static char *nest_end(char *start, uint16_t type, char *end)
{
	struct nlattr *a = (struct nlattr *)start;

	a->nla_type = type | NLA_F_NESTED;
	a->nla_len = end - start;
	return end;
}

struct local {
	struct in_addr addr;
	uint8_t id;
	int32_t ifindex;
};

/* subflow_create writes SUBFLOW_CREATE into req and returns its length. */
static size_t subflow_create(char *req, uint16_t family, uint32_t seq, uint32_t token,
			     const struct local *l, uint32_t daddr, uint16_t dport)
{
	struct nlmsghdr *h = (struct nlmsghdr *)req;
	struct genlmsghdr *g = (struct genlmsghdr *)(req + NLMSG_HDRLEN);
	uint16_t af = AF_INET;
	char *p, *nest;

	memset(req, 0, NLMSG_HDRLEN + GENL_HDRLEN);
	g->cmd = CMD_SUBFLOW_CREATE;
	g->version = 1;
	p = req + NLMSG_HDRLEN + GENL_HDRLEN;
	p = attr(p, ATTR_TOKEN, &token, sizeof(token));

	nest = p;
	p += NLA_HDRLEN;
	p = attr(p, ADDR_FAMILY, &af, sizeof(af));
	p = attr(p, ADDR_ADDR4, &l->addr, sizeof(l->addr));
	p = attr(p, ADDR_ID, &l->id, sizeof(l->id));
	if (l->ifindex)
		p = attr(p, ADDR_IF_IDX, &l->ifindex, sizeof(l->ifindex));
	p = nest_end(nest, ATTR_ADDR, p);

	nest = p;
	p += NLA_HDRLEN;
	p = attr(p, ADDR_FAMILY, &af, sizeof(af));
	p = attr(p, ADDR_ADDR4, &daddr, sizeof(daddr));
	p = attr(p, ADDR_PORT, &dport, sizeof(dport));
	p = nest_end(nest, ATTR_ADDR_REMOTE, p);

	h->nlmsg_len = p - req;
	h->nlmsg_type = family;
	h->nlmsg_flags = NLM_F_REQUEST;
	h->nlmsg_seq = seq;
	return h->nlmsg_len;
}

static int number(const char *flag, const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "barepm-c: %s %s: want %ld..%ld\n", flag, s, lo, hi);
		exit(2);
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	static char buf[16384], req[256];
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	struct local l = { .id = 1 };
	int family = 0, group = 0, have_local = 0, rcvbuf = 32 << 20;
	uint32_t seq = 0;
	long sent = 0, lost = 0;
	int ev, rq;

	for (int i = 1; i + 1 < argc; i += 2) {
		const char *f = argv[i], *v = argv[i + 1];

		if (!strcmp(f, "-family"))
			family = number(f, v, 1, 65535);
		else if (!strcmp(f, "-group"))
			group = number(f, v, 1, 1 << 30);
		else if (!strcmp(f, "-ifindex"))
			l.ifindex = number(f, v, 0, 1 << 30);
		else if (!strcmp(f, "-id"))
			l.id = number(f, v, 1, 255);
		else if (!strcmp(f, "-local"))
			have_local = inet_pton(AF_INET, v, &l.addr) == 1;
		else {
			fprintf(stderr, "barepm-c: unknown flag %s\n", f);
			return 2;
		}
	}
	if (!family || !group || !have_local) {
		fprintf(stderr, "barepm-c: -family, -group and an IPv4 -local are required\n");
		return 2;
	}

	ev = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	rq = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (ev < 0 || rq < 0 || bind(ev, (struct sockaddr *)&sa, sizeof(sa)) ||
	    bind(rq, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("barepm-c: netlink socket");
		return 1;
	}
	setsockopt(ev, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	if (setsockopt(ev, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group))) {
		perror("barepm-c: joining the events group");
		return 1;
	}
	/* Netlink sockets cannot be shut down: wake now and then to stop. */
	setsockopt(ev, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("ready\n");
	fflush(stdout);

	while (!stopping) {
		int n = recv(ev, buf, sizeof(buf), 0);

		if (n < 0) {
			if (errno == ENOBUFS)
				lost++;
			continue;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			struct genlmsghdr *g = NLMSG_DATA(h);
			char *p = (char *)g + GENL_HDRLEN, *end = (char *)h + h->nlmsg_len;
			uint32_t token = 0, daddr = 0;
			uint16_t af = 0, dport = 0;
			int server = 0;

			if (h->nlmsg_len < NLMSG_HDRLEN + GENL_HDRLEN || g->cmd != EVENT_ESTABLISHED)
				continue;
			while (p + NLA_HDRLEN <= end) {
				struct nlattr *a = (struct nlattr *)p;
				void *d = p + NLA_HDRLEN;

				if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end)
					break;
				switch (a->nla_type & NLA_TYPE_MASK) {
				case EV_TOKEN: memcpy(&token, d, 4); break;
				case EV_FAMILY: memcpy(&af, d, 2); break;
				case EV_DADDR4: memcpy(&daddr, d, 4); break;
				case EV_DPORT: memcpy(&dport, d, 2); dport = ntohs(dport); break;
				case EV_SERVER_SIDE: server = 1; break;
				}
				p += NLA_ALIGN(a->nla_len);
			}
			if (server || af != AF_INET)
				continue;
			if (send(rq, req, subflow_create(req, family, ++seq, token, &l, daddr, dport), 0) > 0)
				sent++;
		}
	}
	printf("asked %ld events-lost %ld\n", sent, lost);
	return 0;
}
