/*
 * pkcs11shim: a PKCS#11 test double that wraps a real module (SoftHSM2).
 *
 * Every call goes to the real module, except that:
 *
 *   - C_GetTokenInfo ORs PIN flags into the token's flags, and may change
 *     ulMinPinLen/ulMaxPinLen, as the control file says. SoftHSM never
 *     reports CKF_USER_PIN_FINAL_TRY or CKF_USER_PIN_LOCKED; real tokens do.
 *   - C_Login appends one line to the log file per call (never the PIN),
 *     and answers CKR_PIN_LOCKED without calling the real module when the
 *     control file says the token is locked, as a locked token would.
 *
 * Environment (read at each call, so a test can change it between runs):
 *
 *   PKCS11SHIM_MODULE  the real module (required), e.g. libsofthsm2.so
 *   PKCS11SHIM_CONTROL a file of lines "LABEL WORD..." or "* WORD..." where
 *                      WORD is low, final-try, locked, minpin=N or maxpin=N;
 *                      "#" starts a comment. A missing file changes nothing.
 *   PKCS11SHIM_LOG     a file C_Login calls are appended to:
 *                      "C_Login token=LABEL user=N rv=0xRV"
 *
 * Build: gcc -shared -fPIC -o libpkcs11shim.so pkcs11shim.c -ldl -I DIR,
 * where DIR holds the OASIS pkcs11.h (the tests use miekg/pkcs11's copy).
 */
#define CK_PTR *
#define NULL_PTR 0
#define CK_DEFINE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#include "pkcs11.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST shim;
static CK_RV load_rv = CKR_GENERAL_ERROR;

/* label copies a blank-padded CK_TOKEN_INFO label into a C string. */
static void label(const CK_UTF8CHAR *in, char out[33]) {
	int n = 32;
	memcpy(out, in, 32);
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\0'))
		n--;
	out[n] = '\0';
}

struct control {
	CK_FLAGS flags;
	long minpin, maxpin; /* -1: unchanged */
};

/* control_for reads the control file's words for the token labeled lbl. */
static struct control control_for(const char *lbl) {
	struct control c = {0, -1, -1};
	const char *path = getenv("PKCS11SHIM_CONTROL");
	FILE *f;
	char line[512];
	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return c;
	while (fgets(line, sizeof line, f) != NULL) {
		char *save = NULL, *w = strtok_r(line, " \t\r\n,", &save);
		if (w == NULL || w[0] == '#' || (strcmp(w, "*") != 0 && strcmp(w, lbl) != 0))
			continue;
		while ((w = strtok_r(NULL, " \t\r\n,", &save)) != NULL) {
			if (w[0] == '#')
				break;
			if (strcmp(w, "low") == 0)
				c.flags |= CKF_USER_PIN_COUNT_LOW;
			else if (strcmp(w, "final-try") == 0)
				c.flags |= CKF_USER_PIN_FINAL_TRY;
			else if (strcmp(w, "locked") == 0)
				c.flags |= CKF_USER_PIN_LOCKED;
			else if (strncmp(w, "minpin=", 7) == 0)
				c.minpin = atol(w + 7);
			else if (strncmp(w, "maxpin=", 7) == 0)
				c.maxpin = atol(w + 7);
		}
	}
	fclose(f);
	return c;
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
	CK_RV rv = real->C_GetTokenInfo(slot, info);
	if (rv == CKR_OK && info != NULL) {
		char lbl[33];
		struct control c;
		label(info->label, lbl);
		c = control_for(lbl);
		info->flags |= c.flags;
		if (c.minpin >= 0)
			info->ulMinPinLen = (CK_ULONG)c.minpin;
		if (c.maxpin >= 0)
			info->ulMaxPinLen = (CK_ULONG)c.maxpin;
	}
	return rv;
}

/* session_label finds the label of the token a session is open on. */
static void session_label(CK_SESSION_HANDLE h, char lbl[33]) {
	CK_SESSION_INFO si;
	CK_TOKEN_INFO ti;
	strcpy(lbl, "?");
	if (real->C_GetSessionInfo(h, &si) == CKR_OK && real->C_GetTokenInfo(si.slotID, &ti) == CKR_OK)
		label(ti.label, lbl);
}

static void log_login(const char *lbl, CK_USER_TYPE user, CK_RV rv) {
	const char *path = getenv("PKCS11SHIM_LOG");
	char line[128];
	int fd, n;
	if (path == NULL)
		return;
	n = snprintf(line, sizeof line, "C_Login token=%s user=%lu rv=0x%lx\n", lbl, (unsigned long)user, (unsigned long)rv);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, line, (size_t)n) != n) {
			/* nothing to do: the test sees a missing line */
		}
		close(fd);
	}
}

static CK_RV shim_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
	char lbl[33];
	CK_RV rv;
	session_label(h, lbl);
	if (user != CKU_SO && (control_for(lbl).flags & CKF_USER_PIN_LOCKED) != 0)
		rv = CKR_PIN_LOCKED; /* a locked token refuses without looking at the PIN */
	else
		rv = real->C_Login(h, user, pin, len);
	log_login(lbl, user, rv);
	return rv;
}

static void load(void) {
	const char *path = getenv("PKCS11SHIM_MODULE");
	void *lib;
	CK_C_GetFunctionList get;
	if (path == NULL || (lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL)
		return;
	get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
	if (get == NULL || get(&real) != CKR_OK || real == NULL)
		return;
	shim = *real;
	shim.C_GetFunctionList = C_GetFunctionList;
	shim.C_GetTokenInfo = shim_GetTokenInfo;
	shim.C_Login = shim_Login;
	load_rv = CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
	pthread_once(&once, load);
	if (load_rv != CKR_OK)
		return load_rv;
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	*list = &shim;
	return CKR_OK;
}
