/* vmbak.c: main(), the global options and the table of verbs.
 *
 * A new verb is one entry in cmds[] and a vmbak_cmd definition in its cmd_*.c file.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "front.h"
#include "jobs_cli.h"
#include "util.h"
#include "vault.h"

static const vmbak_cmd cmd_help_def;

static const vmbak_cmd *const cmds[] = {
    &cmd_init_def,   &cmd_ingest_def,  &cmd_list_def,	 &cmd_info_def,	     &cmd_restore_def,
    &cmd_files_def,  &cmd_verify_def,  &cmd_protect_def, &cmd_unprotect_def, &cmd_delete_def,
    &cmd_prune_def,  &cmd_gc_def,      &cmd_jobs_def,	 &cmd_key_def,	     &cmd_keyvault_def,
    &cmd_rewrap_def, &cmd_upgrade_def, &cmd_backup_def, &cmd_sync_def, &cmd_serve_def,
    &cmd_help_def,
};

static void print_main_help(void)
{
	size_t i;

	fputs("usage: vmbak [GLOBAL OPTIONS] COMMAND [OPTIONS] ARGS\n"
	      "       vmbak help [COMMAND]\n"
	      "\n"
	      "A deduplicating backup vault for virtual machine disk images.\n"
	      "\n"
	      "commands:\n",
	      stdout);
	for (i = 0; i < VBU_ARRAY_SIZE(cmds); i++)
		printf("  %-10s %s\n", cmds[i]->name, cmds[i]->summary);
	fputs("\n"
	      "global options:\n"
	      "  -h, --help              show this help\n"
	      "  --version               print the version\n"
	      "  --progress              show progress on stderr even when it is not a terminal\n"
	      "  --passphrase-file F     read the vault passphrase from the first line of F\n"
	      "\n"
	      "environment: VMBAK_PASSPHRASE_FILE names a file holding the vault passphrase,\n"
	      "VMBAK_PASSPHRASE holds it; otherwise it is asked on the terminal.\n"
	      "exit status: 0 success, 1 failure, 2 usage error, 3 verify found damage.\n"
	      "`vmbak COMMAND --help` describes a command; see also vmbak(1).\n",
	      stdout);
}

static const vmbak_cmd *find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < VBU_ARRAY_SIZE(cmds); i++)
		if (strcmp(cmds[i]->name, name) == 0)
			return cmds[i];
	return NULL;
}

static const char help_help[] = "usage: vmbak help [COMMAND]\n"
				"\n"
				"Describes COMMAND, or lists the commands.\n";

static int cmd_help(verb_ctx *c)
{
	const vmbak_cmd *cmd;

	if (c->nargs == 0) {
		print_main_help();
		return VMBAK_EXIT_OK;
	}
	cmd = find_cmd(c->args[0]);
	if (!cmd)
		return usage_err("unknown command '%s' (try 'vmbak --help')", q(c->args[0]));
	fputs(cmd->help, stdout);
	return VMBAK_EXIT_OK;
}

static const char *const help_args[] = {"COMMAND"};

static const vmbak_cmd cmd_help_def = {
    .name = "help",
    .summary = "describe a command",
    .help = help_help,
    .usage = "vmbak help [COMMAND]",
    .arg_names = help_args,
    .min_args = 0,
    .max_args = 1,
    .run = cmd_help,
};

enum { OPT_VERSION = 0x100, OPT_PROGRESS, OPT_PASSPHRASE_FILE };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {"progress", no_argument, NULL, OPT_PROGRESS},
	    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
	    {"passphrase", required_argument, NULL, OPT_PASSPHRASE_REFUSED},
	    {NULL, 0, NULL, 0},
	};
	static const front_program prog = {
	    .name = "vmbak",
	    .passphrase_option = "--passphrase-file",
	    .no_passphrase_status = VMBAK_EXIT_USAGE,
	};
	vmbak_globals g = {0};
	const vmbak_cmd *c;
	int opt, status;

	status = front_init(&prog);
	if (status != VMBAK_EXIT_OK)
		return status;
	opterr = 0;
	/* "+": stop at the verb; the verb parses the rest with its own options. */
	while ((opt = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			print_main_help();
			return finish_stdout(VMBAK_EXIT_OK);
		case OPT_VERSION:
			printf("vmbak %s (vault format %d)\n", VMBAK_VERSION, VBS_FORMAT_VERSION);
			return finish_stdout(VMBAK_EXIT_OK);
		case OPT_PROGRESS:
			g.progress = 1;
			break;
		case OPT_PASSPHRASE_FILE:
			status = passphrase_file_arg(optarg, &g.passphrase_file);
			if (status != 0)
				return status;
			break;
		case OPT_PASSPHRASE_REFUSED:
			return passphrase_option_refused();
		default:
			getopt_error(argv, longopts, opt, NULL);
			return VMBAK_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return usage_err("no command given (try 'vmbak --help')");
	c = find_cmd(argv[optind]);
	if (!c)
		return usage_err("unknown command '%s' (try 'vmbak --help')", q(argv[optind]));
	status = verb_main(c, argc - optind, argv + optind, &g);
	return finish_stdout(status);
}
