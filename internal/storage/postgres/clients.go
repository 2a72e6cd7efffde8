package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
)

const clientCols = `id, name, secret_hash, auth_method, redirect_uris, scope, grant_types, launch_uri,
	logo_uri, id_token_signed_response_alg, jwks, jwks_uri, registration_token_hash, disabled,
	created_at, updated_at, dpop_bound_access_tokens, require_par, tls_client_auth_subject_dn`

func scanClient(row pgx.Row) (*storage.Client, error) {
	var c storage.Client
	if err := row.Scan(&c.ID, &c.Name, &c.SecretHash, &c.AuthMethod, &c.RedirectURIs,
		&c.Scope, &c.GrantTypes, &c.LaunchURI, &c.LogoURI, &c.IDTokenSignedResponseAlg,
		&c.JWKS, &c.JWKSURI, &c.RegistrationTokenHash, &c.Disabled,
		ts(&c.CreatedAt), ts(&c.UpdatedAt), &c.DPoPBoundAccessTokens, &c.RequirePAR,
		&c.TLSClientAuthSubjectDN); err != nil {
		return nil, err
	}
	return &c, nil
}

func clientArgs(c *storage.Client) []any {
	return []any{c.ID, c.Name, c.SecretHash, c.AuthMethod, c.RedirectURIs, c.Scope, c.GrantTypes,
		c.LaunchURI, c.LogoURI, c.IDTokenSignedResponseAlg, c.JWKS, c.JWKSURI, c.RegistrationTokenHash,
		c.Disabled, tz(c.CreatedAt), tz(c.UpdatedAt), c.DPoPBoundAccessTokens, c.RequirePAR,
		c.TLSClientAuthSubjectDN}
}

// CreateClient inserts c; ErrConflict if its id is taken.
func (s *Store) CreateClient(ctx context.Context, c *storage.Client) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO clients (`+clientCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`, clientArgs(c)...)
	return wrap("create client", err)
}

// GetClient returns the client with that id.
func (s *Store) GetClient(ctx context.Context, id string) (*storage.Client, error) {
	c, err := scanClient(s.pool.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
	return c, wrap("get client", err)
}

// ListClients returns every client ordered by creation time, then id.
func (s *Store) ListClients(ctx context.Context) ([]storage.Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+clientCols+` FROM clients ORDER BY created_at NULLS FIRST, id COLLATE "C"`)
	if err != nil {
		return nil, wrap("list clients", err)
	}
	defer rows.Close()
	var out []storage.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, wrap("list clients", err)
		}
		out = append(out, *c)
	}
	return out, wrap("list clients", rows.Err())
}

// UpdateClient reads the client (locking its row), applies update and
// writes it back in one transaction. The id cannot change. An error from
// update aborts.
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*storage.Client) error) (*storage.Client, error) {
	var out *storage.Client
	err := s.tx(ctx, "update client", func(tx pgx.Tx) error {
		c, err := scanClient(tx.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if err := update(c); err != nil {
			return err
		}
		c.ID = id
		if err := execOne(ctx, tx, `UPDATE clients SET name = $2, secret_hash = $3, auth_method = $4,
			redirect_uris = $5, scope = $6, grant_types = $7, launch_uri = $8, logo_uri = $9,
			id_token_signed_response_alg = $10, jwks = $11, jwks_uri = $12, registration_token_hash = $13,
			disabled = $14, created_at = $15, updated_at = $16, dpop_bound_access_tokens = $17,
			require_par = $18, tls_client_auth_subject_dn = $19 WHERE id = $1`, clientArgs(c)...); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteClient deletes the client; ErrNotFound if there is none.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return wrap("delete client", execOne(ctx, s.pool, `DELETE FROM clients WHERE id = $1`, id))
}
