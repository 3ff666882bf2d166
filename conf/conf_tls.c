/*
 * conf_tls — check the TLS material a configuration names before the node relies on it:
 * the certificate and key parse (with the passphrase file when given), the key belongs to the
 * certificate, the certificate is valid now, and the CA file holds at least one certificate.
 * An expiry closer than expiry_warn_days is a warning, not an error: the node can still serve.
 */
#include "conf/conf.h"
#include "conf/conf_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

/* Last OpenSSL error as text (queue cleared). */
static const char *ssl_reason(char *buf, size_t bufsz)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, bufsz);
    else
        snprintf(buf, bufsz, "no detail");
    ERR_clear_error();
    return buf;
}

/* First line of the passphrase file, without its line end. */
static int read_passphrase(const char *path, char *out, size_t outsz, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return rp_conf_errf(err, errlen, "[tls] key_passphrase_file %s: cannot open", path);
    out[0] = '\0';
    if (!fgets(out, (int)outsz, fp))
        out[0] = '\0';
    fclose(fp);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static X509 *read_cert(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    if (!b)
        return NULL;
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

int rp_conf_tls_check(const rp_conf *c, char *err, size_t errlen, char *warn, size_t warnlen)
{
    if (warn && warnlen)
        warn[0] = '\0';
    if (!c->tls_port)
        return 0;
    char why[256], pass[1024] = "";
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    int rc = RP_ECONF;
    ERR_clear_error();
    if (c->tls_key_passphrase_file[0] &&
        read_passphrase(c->tls_key_passphrase_file, pass, sizeof pass, err, errlen))
        goto done;
    if (!(cert = read_cert(c->tls_cert))) {
        rp_conf_errf(err, errlen, "[tls] cert %s: not a PEM certificate (%s)", c->tls_cert,
                     ssl_reason(why, sizeof why));
        goto done;
    }
    BIO *b = BIO_new_file(c->tls_key, "r");
    if (b) {
        key = PEM_read_bio_PrivateKey(b, NULL, NULL, pass[0] ? pass : (void *)"");
        BIO_free(b);
    }
    if (!key) {
        rp_conf_errf(err, errlen, "[tls] key %s: cannot read the private key%s (%s)", c->tls_key,
                     c->tls_key_passphrase_file[0] ? " with key_passphrase_file"
                                                   : " (encrypted? set key_passphrase_file)",
                     ssl_reason(why, sizeof why));
        goto done;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        rp_conf_errf(err, errlen, "[tls] key %s does not belong to cert %s", c->tls_key,
                     c->tls_cert);
        goto done;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
        rp_conf_errf(err, errlen, "[tls] cert %s is not valid yet", c->tls_cert);
        goto done;
    }
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert))) {
        rp_conf_errf(err, errlen, "[tls] cert %s: unreadable expiry date", c->tls_cert);
        goto done;
    }
    if (days < 0 || (days == 0 && secs <= 0)) {
        rp_conf_errf(err, errlen, "[tls] cert %s expired %d days ago", c->tls_cert, -days);
        goto done;
    }
    if (days < c->tls_expiry_warn_days && warn && warnlen)
        snprintf(warn, warnlen, "[tls] cert %s expires in %d days (expiry_warn_days = %d)",
                 c->tls_cert, days, c->tls_expiry_warn_days);
    if (c->tls_ca_file[0]) {
        X509 *ca = read_cert(c->tls_ca_file);
        if (!ca) {
            rp_conf_errf(err, errlen, "[tls] ca_file %s: no PEM certificate in it (%s)",
                         c->tls_ca_file, ssl_reason(why, sizeof why));
            goto done;
        }
        X509_free(ca);
    }
    rc = 0;
done:
    OPENSSL_cleanse(pass, sizeof pass);
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}
