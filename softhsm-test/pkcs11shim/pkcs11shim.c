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
 *   - C_Sign appends one line to the signature log per signature made
 *     (not for the length query with a NULL buffer): the token, the key's
 *     CKA_LABEL (remembered from C_SignInit) and a hash of the data signed,
 *     so that a test can count signatures per key and find a payload
 *     signed twice by one key.
 *
 * Environment (read at each call, so a test can change it between runs):
 *
 *   PKCS11SHIM_MODULE  the real module (required), e.g. libsofthsm2.so
 *   PKCS11SHIM_CONTROL a file of lines "LABEL WORD..." or "* WORD..." where
 *                      WORD is low, final-try, locked, minpin=N or maxpin=N;
 *                      "#" starts a comment. A missing file changes nothing.
 *   PKCS11SHIM_LOG     a file C_Login calls are appended to:
 *                      "C_Login token=LABEL user=N rv=0xRV"
 *   PKCS11SHIM_SIGNLOG a file signatures are appended to:
 *                      "C_Sign token=LABEL key=LABEL data=FNV1A64/LEN rv=0xRV"
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

/* The key each session's signing operation was initialized with. */
#define MAXSESS 1024
static pthread_mutex_t keys_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE key;
} sign_keys[MAXSESS];

static CK_RV shim_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
	CK_RV rv = real->C_SignInit(h, mech, key);
	int i, free_slot = -1;
	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&keys_mu);
	for (i = 0; i < MAXSESS; i++) {
		if (sign_keys[i].session == h) {
			free_slot = i;
			break;
		}
		if (free_slot < 0 && sign_keys[i].session == 0)
			free_slot = i;
	}
	if (free_slot >= 0) {
		sign_keys[free_slot].session = h;
		sign_keys[free_slot].key = key;
	}
	pthread_mutex_unlock(&keys_mu);
	return rv;
}

static CK_RV shim_CloseSession(CK_SESSION_HANDLE h) {
	int i;
	pthread_mutex_lock(&keys_mu);
	for (i = 0; i < MAXSESS; i++)
		if (sign_keys[i].session == h)
			sign_keys[i].session = 0;
	pthread_mutex_unlock(&keys_mu);
	return real->C_CloseSession(h);
}

/* key_label finds the CKA_LABEL of the key the session signs with. */
static void key_label(CK_SESSION_HANDLE h, char out[65]) {
	CK_OBJECT_HANDLE key = 0;
	CK_ATTRIBUTE a;
	int i, found = 0;
	char buf[64];
	strcpy(out, "?");
	pthread_mutex_lock(&keys_mu);
	for (i = 0; i < MAXSESS; i++) {
		if (sign_keys[i].session == h) {
			key = sign_keys[i].key;
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&keys_mu);
	if (!found)
		return;
	a.type = CKA_LABEL;
	a.pValue = buf;
	a.ulValueLen = sizeof buf;
	if (real->C_GetAttributeValue(h, key, &a, 1) == CKR_OK && a.ulValueLen < sizeof buf) {
		memcpy(out, buf, a.ulValueLen);
		out[a.ulValueLen] = '\0';
	}
}

static CK_RV shim_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen) {
	char lbl[33], key[65], line[256];
	unsigned long long fnv = 1469598103934665603ULL;
	const char *path = getenv("PKCS11SHIM_SIGNLOG");
	CK_ULONG i;
	CK_RV rv;
	int fd, n;
	if (sig == NULL || path == NULL)
		return real->C_Sign(h, data, len, sig, siglen);
	session_label(h, lbl);
	key_label(h, key); /* before C_Sign ends the operation */
	rv = real->C_Sign(h, data, len, sig, siglen);
	if (rv == CKR_BUFFER_TOO_SMALL)
		return rv; /* the operation goes on: no signature yet */
	for (i = 0; data != NULL && i < len; i++) {
		fnv ^= data[i];
		fnv *= 1099511628211ULL;
	}
	n = snprintf(line, sizeof line, "C_Sign token=%s key=%s data=%016llx/%lu rv=0x%lx\n", lbl, key, fnv, (unsigned long)len, (unsigned long)rv);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, line, (size_t)n) != n) {
			/* nothing to do: the test sees a missing line */
		}
		close(fd);
	}
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
	shim.C_SignInit = shim_SignInit;
	shim.C_Sign = shim_Sign;
	shim.C_CloseSession = shim_CloseSession;
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
