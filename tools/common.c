/* common.c: messages, argument checks, vault opening, sizes and JSON for the vmbak verbs. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "passphrase.h"
#include "rp.h"
#include "util.h"
#include "vault.h"

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

void getopt_error(char **argv, const struct option *longopts, int c, const char *verb)
{
	const char *arg = argv[optind - 1];
	char hint[96];
	size_t len;

	if (verb)
		snprintf(hint, sizeof(hint), " for %s (see 'vmbak %s --help')", verb, verb);
	else
		snprintf(hint, sizeof(hint), " (try 'vmbak --help')");
	if (c == ':') {
		/* Only long options take arguments here, and they always advance optind. */
		vbu_err("option '%s' needs an argument%s", q(arg), hint);
		return;
	}
	/* Never print what follows '=': it may be a secret given to a wrong option. */
	len = strcspn(arg, "=");
	if (optopt == 0) {
		vbu_err("unknown option '%.*s'%s", (int)len, q(arg), hint);
		return;
	}
	/* optopt is either an unknown short option or the value of a long option that was given
	 * an argument it does not take ("--json=yes"). */
	for (; longopts && longopts->name; longopts++) {
		if (longopts->val == optopt && longopts->has_arg == no_argument &&
		    strncmp(arg, "--", 2) == 0 && arg[len] == '=' &&
		    strncmp(arg + 2, longopts->name, len - 2) == 0) {
			vbu_err("option '--%s' takes no argument%s", longopts->name, hint);
			return;
		}
	}
	if (optopt > 0x20 && optopt < 0x7f)
		vbu_err("unknown option '-%c'%s", optopt, hint);
	else
		vbu_err("unknown option '%.*s'%s", (int)len, q(arg), hint);
}

int verb_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
		int *state)
{
	int c;

	if (*state == 0) {
		optind = 0; /* glibc: full reinitialisation, as for a fresh argv */
		opterr = 0;
		*state = 1;
	}
	c = getopt_long(argc, argv, shortopts, longopts, NULL);
	if (c == '?' || c == ':') {
		getopt_error(argv, longopts, c, argv[0]);
		return '?';
	}
	return c;
}

int passphrase_option_refused(void)
{
	return usage_err("there is no --passphrase option: passphrases never go on the command "
			 "line; use --passphrase-file F or VMBAK_PASSPHRASE_FILE");
}

int check_vault_arg(const char *path)
{
	size_t len = strlen(path);

	if (len == 0)
		return usage_err("vault path is empty");
	if (len >= PATH_MAX)
		return usage_err("vault path is too long (%zu bytes, at most %d)", len,
				 PATH_MAX - 1);
	return 0;
}

int check_name_arg(const char *what, const char *name)
{
	if (!*name)
		return usage_err("empty %s name: use " VBS_NAME_RULE, what);
	if (!vbu_name_valid(name))
		return usage_err("invalid %s name '%s': use " VBS_NAME_RULE, what, q(name));
	return 0;
}

int check_point_arg(const char *target, int need_id, const char *usage, char *vm, char *id)
{
	const char *slash = strchr(target, '/'), *rp = slash ? slash + 1 : "";
	size_t vm_len = slash ? (size_t)(slash - target) : strlen(target);
	int status;

	if (need_id && !*rp)
		return usage_err("expected VM/RP, got '%s' (usage: %s)", q(target), usage);
	if (vm_len > VBS_NAME_MAX)
		return usage_err("invalid VM name '%s': use " VBS_NAME_RULE, q(target));
	memcpy(vm, target, vm_len);
	vm[vm_len] = '\0';
	if ((status = check_name_arg("VM", vm)) != 0)
		return status;
	id[0] = '\0';
	if (!*rp || strcmp(rp, "latest") == 0)
		return 0;
	if (strlen(rp) >= VBS_RP_ID_MAX)
		return usage_err("invalid point id '%s': too long", q(rp));
	if (rp[strspn(rp, "0123456789-:TZ")])
		return usage_err("invalid point id '%s': ids look like 2026-11-23T05:40:12Z", q(rp));
	snprintf(id, VBS_RP_ID_MAX, "%s", rp);
	return 0;
}

int check_nargs(const char *usage, const char *const *names, int nmin, int nmax, int nargs,
		char **args)
{
	if (nargs < nmin)
		return usage_err("missing %s (usage: %s)", names[nargs], usage);
	if (nargs > nmax)
		return usage_err("unexpected argument '%s' (usage: %s)", q(args[nmax]), usage);
	return 0;
}

int passphrase_file_arg(const char *arg, const char **ret)
{
	if (!*arg)
		return usage_err("empty file name for --passphrase-file");
	*ret = arg;
	return 0;
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
		vbu_err("no passphrase for %s '%s': use --passphrase-file, %s or %s, or run on a "
			"terminal",
			what, q(path), src->env_file, src->env_value);
		return VMBAK_EXIT_USAGE;
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

int passphrase_for(const char *path, const char *passphrase_file, const vmbak_globals *g,
		   int confirm, char **ret)
{
	vbk_passphrase_source src = {
	    .file = passphrase_file ? passphrase_file : g->passphrase_file,
	    .env_file = "VMBAK_PASSPHRASE_FILE",
	    .env_value = "VMBAK_PASSPHRASE",
	    .prompt = confirm ? "new vault passphrase: " : "vault passphrase: ",
	    .confirm = confirm,
	};

	return passphrase_get(&src, "vault", path, ret);
}

int vault_unlock(vbs_vault *v, const char *path, const char *passphrase_file,
		 const vmbak_globals *g, char **ret_pass)
{
	char *pass = NULL;
	int r, status;

	if (!vbs_vault_needs_passphrase(v))
		return 0;
	status = passphrase_for(path, passphrase_file, g, 0, &pass);
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

int vault_open(const char *path, int readonly, int flags, const char *passphrase_file,
	       const vmbak_globals *g, vbs_vault **ret)
{
	vbs_vault *v = NULL;
	int r, status;

	r = vbs_vault_open(path, readonly, &v);
	if (r < 0) {
		status = store_err(r, "cannot open vault '%s'", q(path));
		goto out;
	}
	/* Format 2 seals every record: every verb unlocks. */
	status = vault_unlock(v, path, passphrase_file, g, NULL);
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

const char *human_size(uint64_t bytes, char buf[HUMAN_SIZE_LEN])
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)bytes / 1024;
	size_t i = 0;

	if (bytes < 1024) {
		snprintf(buf, HUMAN_SIZE_LEN, "%llu B", (unsigned long long)bytes);
		return buf;
	}
	while (d >= 1024 && i + 1 < VBU_ARRAY_SIZE(units)) {
		d /= 1024;
		i++;
	}
	snprintf(buf, HUMAN_SIZE_LEN, d < 99.95 ? "%.1f %s" : "%.0f %s", d, units[i]);
	return buf;
}

json_object *json_u64(uint64_t v)
{
	return json_object_new_uint64(v);
}

json_object *json_str_or_null(const char *s)
{
	return (s && *s) ? json_object_new_string(s) : NULL;
}

json_object *json_time(int64_t unix_s)
{
	char buf[21];

	if (unix_s == 0)
		return NULL;
	vbu_format_time(unix_s, buf);
	return json_object_new_string(buf);
}

int json_print(json_object *o)
{
	const char *s;
	int status = VMBAK_EXIT_OK;

	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						  JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s) {
		vbu_errno(-ENOMEM, "cannot format JSON");
		status = VMBAK_EXIT_FAIL;
	} else if (fputs(s, stdout) == EOF || putchar('\n') == EOF) {
		vbu_errno(-errno, "cannot write to standard output");
		status = VMBAK_EXIT_FAIL;
	}
	json_object_put(o);
	return status;
}

int finish_stdout(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		/* Report only when nothing else was: one line on stderr. */
		if (status == VMBAK_EXIT_OK) {
			vbu_errno(errno ? -errno : -EIO, "cannot write to standard output");
			status = VMBAK_EXIT_FAIL;
		}
	}
	return status;
}
