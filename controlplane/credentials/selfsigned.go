package credentials

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Why go-jose and not golang.org/x/oauth2/google: JWTAccessTokenSourceWithScope and
// JWTAccessTokenSourceFromJSON fix exp at iat+1h, read time.Now directly, set no jti and
// wrap the source in ReuseTokenSource, which hands the same JWT to every caller for up to
// an hour. Invariant 2 needs the opposite (one credential per request, living no longer
// than the policy's TTL, unique id for audit), and oauth2/jws is deprecated. go-jose is
// already in the module for OIDC, signs RS256 with a kid header, and lets tests verify with
// the same library.

// SelfSignedJWTMinter mints a fresh service-account JWT per request (mode self-signed-jwt).
type SelfSignedJWTMinter struct {
	key    *ServiceAccountKey
	signer jose.Signer
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
}

// NewSelfSignedJWTMinter returns a Minter that signs with key. cfg.KeyFile is not read.
func NewSelfSignedJWTMinter(key *ServiceAccountKey, cfg Config, opts ...Option) (*SelfSignedJWTMinter, error) {
	cfg.Mode = ModeSelfSignedJWT
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	signer, err := newSigner(key)
	if err != nil {
		return nil, err
	}
	o := buildOptions(cfg, opts)
	return &SelfSignedJWTMinter{key: key, signer: signer, cfg: cfg, now: o.now, log: o.log}, nil
}

func newSigner(key *ServiceAccountKey) (jose.Signer, error) {
	if key == nil || key.privateKey == nil {
		return nil, fmt.Errorf("%w: no private key", ErrKeyFile)
	}
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key.privateKey, KeyID: key.PrivateKeyID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot sign with private_key", ErrKeyFile)
	}
	return s, nil
}

// Mint signs a new JWT for req. It never caches: each call has its own jti.
func (m *SelfSignedJWTMinter) Mint(ctx context.Context, req Request) (Credential, error) {
	if err := ctx.Err(); err != nil {
		return Credential{}, err
	}
	if req.ServiceAccount != "" && req.ServiceAccount != m.key.ClientEmail {
		return Credential{}, fmt.Errorf("%w: mode %s can only act as the key's own service account %s, not %s (use mode %s)",
			ErrRequest, ModeSelfSignedJWT, m.key.ClientEmail, req.ServiceAccount, ModeImpersonate)
	}
	ttl, err := resolveTTL(req.TTL, m.cfg.TTL)
	if err != nil {
		return Credential{}, err
	}
	var scopes []string
	audience := m.cfg.SelfSignedJWT.Audience
	if m.cfg.SelfSignedJWT.Claim == ClaimScope {
		if scopes, err = requestScopes(req.Scopes, m.cfg.Scopes); err != nil {
			return Credential{}, err
		}
		audience = ""
	}
	cred, err := signJWT(m.signer, m.key.ClientEmail, audience, scopes, m.now(), ttl)
	if err != nil {
		return Credential{}, err
	}
	m.log.LogAttrs(ctx, slog.LevelDebug, "upstream credential minted",
		slog.String("request_id", req.RequestID), slog.String("decision_id", req.DecisionID),
		slog.Any("credential", cred))
	return cred, nil
}

// signJWT builds and signs one self-signed JWT: aud-style when audience is set, otherwise
// scope-style (a scope claim and no aud, as Google's auth libraries send it).
func signJWT(signer jose.Signer, email, audience string, scopes []string, now time.Time, ttl time.Duration) (Credential, error) {
	// JWT times are whole seconds; truncate once so the claims and ExpiresAt agree and exp
	// is never later than now+ttl.
	iat := now.Truncate(time.Second)
	exp := iat.Add(ttl.Truncate(time.Second))
	jti := rand.Text() // 128 random bits, base32
	claims := jwt.Claims{
		Issuer:   email,
		Subject:  email,
		IssuedAt: jwt.NewNumericDate(iat),
		Expiry:   jwt.NewNumericDate(exp),
		ID:       jti,
	}
	b := jwt.Signed(signer)
	if audience != "" {
		claims.Audience = jwt.Audience{audience}
	} else {
		b = b.Claims(map[string]any{"scope": strings.Join(scopes, " ")})
	}
	tok, err := b.Claims(claims).Serialize()
	if err != nil {
		// go-jose's signing errors concern the key type or the claims, never the key bytes.
		return Credential{}, fmt.Errorf("%w: sign JWT: %w", ErrKeyFile, err)
	}
	return Credential{
		Token:          NewSecret(tok),
		ID:             jti,
		Mode:           ModeSelfSignedJWT,
		ServiceAccount: email,
		Scopes:         scopes,
		IssuedAt:       iat,
		ExpiresAt:      exp,
	}, nil
}

// String names the minter by its non-secret settings. It and Format keep fmt (and loggers
// built on it) from walking into the key and the signer.
func (m *SelfSignedJWTMinter) String() string {
	return fmt.Sprintf("SelfSignedJWTMinter{service_account=%s kid=%s claim=%s ttl=%s}",
		m.key.ClientEmail, m.key.PrivateKeyID, m.cfg.SelfSignedJWT.Claim, m.cfg.TTL)
}

// Format prints String for every verb.
func (m *SelfSignedJWTMinter) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(m.String())) }
