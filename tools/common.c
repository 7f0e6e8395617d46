/* common.c: options, argument checks, sizes and JSON for the vmbak verbs. */
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
		return usage_err("invalid point id '%s': ids look like 2026-11-23T05:40:12Z",
				 q(rp));
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

/* ---- the verb table ---- */

#define OPT_VERB_PASSPHRASE_FILE 0x1fe

struct option *verb_option_table(const vmbak_cmd *cmd)
{
	static const struct option help = {"help", no_argument, NULL, 'h'};
	static const struct option pass[] = {
	    {"passphrase-file", required_argument, NULL, OPT_VERB_PASSPHRASE_FILE},
	    {"passphrase", required_argument, NULL, OPT_PASSPHRASE_REFUSED},
	};
	struct option *all;
	size_t n = 0, k = 0;

	if (cmd->main || cmd->subs)
		return NULL;
	while (cmd->options && cmd->options[n].name)
		n++;
	all = calloc(n + 4, sizeof(*all));
	if (!all)
		return NULL;
	for (; k < n; k++)
		all[k] = cmd->options[k];
	all[k++] = help;
	if (cmd->flags & VERB_PASSPHRASE_FILE) {
		all[k++] = pass[0];
		all[k++] = pass[1];
	}
	return all;
}

int verb_main(const vmbak_cmd *cmd, int argc, char **argv, vmbak_globals *g)
{
	verb_ctx c = {.cmd = cmd, .g = g, .argc = argc, .argv = argv};
	const char *passfile = NULL;
	struct option *longopts = NULL;
	unsigned flags = cmd->flags;
	int opt, state = 0, status;

	if (cmd->main)
		return cmd->main(argc, argv, g);
	if (cmd->subs) {
		if (argc < 2)
			return usage_err("no %s command given (usage: %s)", cmd->name, cmd->usage);
		if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
			fputs(cmd->help, stdout);
			return VMBAK_EXIT_OK;
		}
		for (size_t i = 0; i < cmd->n_subs; i++) {
			if (strcmp(cmd->subs[i]->name, argv[1]) == 0) {
				/* getopt sees the verb's name, then what follows the subcommand. */
				argv[1] = argv[0];
				return verb_main(cmd->subs[i], argc - 1, argv + 1, g);
			}
		}
		return usage_err("unknown %s command '%s' (usage: %s)", cmd->name, q(argv[1]),
				 cmd->usage);
	}
	if (flags & VERB_OPENS_VAULT)
		flags |= VERB_VAULT_ARG;
	longopts = verb_option_table(cmd);
	c.opts = calloc(1, cmd->opts_size ? cmd->opts_size : 1);
	if (!longopts || !c.opts) {
		vbu_errno(-ENOMEM, "cannot parse the command line");
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	/* 1. options */
	while ((opt = verb_getopt(argc, argv, cmd->shortopts ? cmd->shortopts : ":h", longopts,
				  &state)) != -1) {
		switch (opt) {
		case 'h':
			fputs(cmd->help, stdout);
			status = VMBAK_EXIT_OK;
			goto out;
		case OPT_VERB_PASSPHRASE_FILE:
			if ((status = passphrase_file_arg(optarg, &passfile)) != 0)
				goto out;
			break;
		case OPT_PASSPHRASE_REFUSED:
			status = passphrase_option_refused();
			goto out;
		case '?':
			status = VMBAK_EXIT_USAGE;
			goto out;
		default:
			status = cmd->option ? cmd->option(&c, opt, optarg) : VMBAK_EXIT_USAGE;
			if (status != 0)
				goto out;
		}
	}
	c.passphrase_opt = passfile;
	c.passphrase_file = verb_passphrase_file(passfile, g);
	if (cmd->options_done && (status = cmd->options_done(&c)) != 0)
		goto out;
	/* 2. how many arguments, 3. the vault argument, 4. the verb's checks */
	c.nargs = argc - optind;
	c.args = argv + optind;
	if ((status = check_nargs(cmd->usage, cmd->arg_names, cmd->min_args, cmd->max_args, c.nargs,
				  c.args)) != 0 ||
	    ((flags & VERB_VAULT_ARG) && (status = check_vault_arg(c.args[0])) != 0) ||
	    (cmd->check && (status = cmd->check(&c)) != 0))
		goto out;
	if (g->check_only) {
		status = VMBAK_EXIT_OK;
		goto out;
	}
	/* 5. the vault */
	if ((flags & VERB_OPENS_VAULT) && (status = vault_open(c.args[0], !(flags & VERB_WRITES), 0,
							       c.passphrase_file, &c.v)) != 0)
		goto out;
	/* 6. the work */
	status = cmd->run(&c);
out:
	vbs_vault_close(c.v);
	if (cmd->done && c.opts)
		cmd->done(&c);
	free(c.opts);
	free(longopts);
	return status;
}

int parse_count(const char *s, unsigned long lo, unsigned long hi, unsigned long *ret)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || x < lo || x > hi)
		return -EINVAL;
	*ret = x;
	return 0;
}

const char *verb_passphrase_file(const char *opt, const vmbak_globals *g)
{
	return opt ? opt : g->passphrase_file;
}

int passphrase_file_arg(const char *arg, const char **ret)
{
	if (!*arg)
		return usage_err("empty file name for --passphrase-file");
	*ret = arg;
	return 0;
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
