/*
 * dockd differential-test driver for the GS1 Barcode Syntax Engine.
 *
 * Written for dockd (not part of the engine). It is compiled at test time
 * together with the engine's C library, which is read from ../shared and
 * never copied into the project. Usage:
 *
 *     driver <syntax-dictionary-file>  < cases  > results
 *
 * Each input line is one scan, hex-encoded, exactly as a scanner transmits
 * it (AIM symbology identifier first), or "H" followed by the hex of
 * bracketed AI text such as "(01)09506000134352(10)ABC" (the human-readable
 * form, given to gs1_encoder_setAIdataStr). Each output line is either
 *
 *     OK[\t<hex of one HRI string>]...
 *     ERR\t<hex of the error message>\t<hex of the error markup>
 *
 * Hex keeps GS (0x1D) and any other byte intact across the pipe.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs1encoders.h"

static void puthex(const char *s) {
	static const char hx[] = "0123456789abcdef";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		putchar(hx[c >> 4]);
		putchar(hx[c & 15]);
	}
}

static int unhex(int c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

int main(int argc, char **argv) {
	static char line[65536];
	static char data[32768];
	gs1_encoder *ctx;
	gs1_encoder_init_status_t status = GS1_ENCODERS_INIT_SUCCESS;
	char msg[512] = "";
	gs1_encoder_init_opts_t opts;

	if (argc != 2) {
		fprintf(stderr, "usage: %s <syntax-dictionary>\n", argv[0]);
		return 2;
	}
	memset(&opts, 0, sizeof(opts));
	opts.struct_size = sizeof(opts);
	opts.flags = gs1_encoder_iDEFAULT;
	opts.syntaxDictionary = argv[1];
	opts.status = &status;
	opts.msgBuf = msg;
	opts.msgBufSize = sizeof(msg);
	ctx = gs1_encoder_init_ex(NULL, &opts);
	if (ctx == NULL || status != GS1_ENCODERS_INIT_SUCCESS) {
		fprintf(stderr, "init failed (status %d): %s\n", (int)status, msg);
		return 1;
	}
	printf("VERSION\t%s\n", gs1_encoder_getVersion());
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		size_t n = strcspn(line, "\r\n"), i = 0, k = 0;
		char **hri = NULL;
		int nhri, j, bracketed = 0;
		bool ok;
		line[n] = '\0';
		if (line[0] == 'H') {
			bracketed = 1;
			i = 1;
		}
		for (; i + 1 < n && k + 1 < sizeof(data); i += 2) {
			int hi = unhex(line[i]), lo = unhex(line[i + 1]);
			if (hi < 0 || lo < 0) break;
			data[k++] = (char)(hi << 4 | lo);
		}
		data[k] = '\0';
		ok = bracketed ? gs1_encoder_setAIdataStr(ctx, data) : gs1_encoder_setScanData(ctx, data);
		if (!ok) {
			fputs("ERR\t", stdout);
			puthex(gs1_encoder_getErrMsg(ctx));
			putchar('\t');
			puthex(gs1_encoder_getErrMarkup(ctx));
			putchar('\n');
			continue;
		}
		fputs("OK", stdout);
		nhri = gs1_encoder_getHRI(ctx, &hri);
		for (j = 0; j < nhri; j++) {
			putchar('\t');
			puthex(hri[j]);
		}
		putchar('\n');
	}
	fflush(stdout);
	return 0;
}
