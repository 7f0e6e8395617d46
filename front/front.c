/* front.c: start-up, messages and vault opening shared by vmbak and vmbakfs (see front.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "front.h"
#include "json.h"
#include "passphrase.h"
#include "util.h"
#include "vault.h"

static const front_program default_program = {
    .name = "vmbak",
    .passphrase_option = "--passphrase-file",
    .no_passphrase_status = VMBAK_EXIT_USAGE,
};
static const front_program *program = &default_program;

int front_init(const front_program *p)
{
	program = p;
	vbu_set_progname(p->name);
	vbu_json_seed();
	/* Both programs unwrap the vault's or the key vault's keys, and the mount daemon holds them
	 * for as long as it runs: no core dump may carry them (this also keeps other processes of
	 * the user from ptrace and /proc/PID/mem). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		vbu_errno(-errno, "cannot turn core dumps off");
		return VMBAK_EXIT_FAIL;
	}
	return VMBAK_EXIT_OK;
}

/* Longest piece of a user string shown in a message; the rest becomes "...". */
#define Q_SHOW 400
#define Q_BUFS 4

const char *q(const char *s)
{
	static __thread char bufs[Q_BUFS][Q_SHOW + 8];
	static __thread unsigned next;
	char *out = bufs[next++ % Q_BUFS];
	size_t o = 0;

	if (!s)
		s = "(null)";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		size_t need = (c < 0x20 || c >= 0x7f) ? 4 : 1;

		if (o + need > Q_SHOW) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (need == 4) {
			/* Always fits: o + 4 <= Q_SHOW and the buffer has Q_SHOW + 8 bytes. */
			static const char hex[] = "0123456789abcdef";
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return out;
}

int usage_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vbu_verr(fmt, ap);
	va_end(ap);
	return VMBAK_EXIT_USAGE;
}

int store_err(int err, const char *fmt, ...)
{
	const char *msg = vbs_errmsg();
	char ctx[1024];
	va_list ap;
	int n;

	if (msg && *msg) {
		vbu_err("%s", q(msg));
		return VMBAK_EXIT_FAIL;
	}
	va_start(ap, fmt);
	n = vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	if (n < 0)
		ctx[0] = '\0';
	vbu_errno(err < 0 ? err : -EIO, "%s", ctx);
	return VMBAK_EXIT_FAIL;
}

int passphrase_get(const vbk_passphrase_source *src, const char *what, const char *path,
		   char **ret)
{
	const char *from = NULL;
	char *pass = NULL;
	int r;

	r = vbk_passphrase_get(src, &pass, &from);
	if (r >= 0) {
		*ret = pass;
		return 0;
	}
	if (!from)
		from = "passphrase source";
	switch (r) {
	case -ENOKEY:
		vbu_err("no passphrase for %s '%s': use %s, %s or %s, or run on a terminal", what,
			q(path), program->passphrase_option, src->env_file, src->env_value);
		return program->no_passphrase_status;
	case -EINVAL:
		vbu_err("empty passphrase from %s", q(from));
		break;
	case -EILSEQ:
		vbu_err("passphrase from %s contains a NUL byte", q(from));
		break;
	case -EKEYREJECTED:
		vbu_err("the two passphrases typed do not match");
		break;
	case -EFBIG:
		vbu_err("passphrase from %s is longer than %d bytes", q(from), VBK_PASSPHRASE_MAX);
		break;
	default:
		vbu_errno(r, "cannot read passphrase from %s", q(from));
		break;
	}
	return VMBAK_EXIT_FAIL;
}

int passphrase_for(const char *path, const char *file, int confirm, char **ret)
{
	vbk_passphrase_source src = {
	    .file = file,
	    .env_file = "VMBAK_PASSPHRASE_FILE",
	    .env_value = "VMBAK_PASSPHRASE",
	    .prompt = confirm ? "new vault passphrase: " : "vault passphrase: ",
	    .confirm = confirm,
	};

	return passphrase_get(&src, "vault", path, ret);
}

int vault_unlock(vbs_vault *v, const char *path, const char *file, char **ret_pass)
{
	char *pass = NULL;
	int r, status;

	if (!vbs_vault_needs_passphrase(v))
		return 0;
	status = passphrase_for(path, file, 0, &pass);
	if (status != 0)
		return status;
	r = vbs_vault_unlock(v, pass);
	if (r == -ENOKEY) {
		vbu_err("wrong passphrase for vault '%s'", q(path));
		status = VMBAK_EXIT_FAIL;
	} else if (r < 0) {
		status = store_err(r, "cannot unlock vault '%s'", q(path));
	}
	if (status == 0 && ret_pass)
		*ret_pass = pass;
	else
		vbk_passphrase_free(pass);
	return status;
}

int vault_open(const char *path, int readonly, int flags, const char *file, vbs_vault **ret)
{
	vbs_vault *v = NULL;
	int r, status;

	r = vbs_vault_open(path, readonly, &v);
	if (r < 0) {
		status = store_err(r, "cannot open vault '%s'", q(path));
		goto out;
	}
	/* Format 2 seals every record: every verb unlocks. */
	status = vault_unlock(v, path, file, NULL);
	if (status != 0)
		goto out;
	r = vbs_vault_open_env(v);
	if (r < 0) {
		status = store_err(r, "cannot open vault '%s'", q(path));
		if (r == -EBADMSG && (flags & VAULT_DAMAGE_EXIT))
			status = VMBAK_EXIT_DAMAGE;
		goto out;
	}
	*ret = v;
	v = NULL;
	status = 0;
out:
	vbs_vault_close(v);
	return status;
}

char *front_fuse_opt(const char *name, const char *value)
{
	size_t n = strlen(name), m = strlen(value);
	char *s = malloc(n + 2 + 2 * m), *w;

	if (!s)
		return NULL;
	w = stpcpy(s, name);
	*w++ = '=';
	for (; *value; value++) {
		if (*value == ',' || *value == '\\')
			*w++ = '\\';
		*w++ = *value;
	}
	*w = '\0';
	return s;
}
