//! Django's permission tables: auth_group, auth_user_groups (and auth_group_permissions,
//! auth_permission, auth_user_user_permissions, which `core::auth::require_permission`
//! reads in one statement on every admin request).

use sqlx::PgExecutor;
use uuid::Uuid;

/// Names of the groups `user` is in, sorted.
pub async fn user_groups(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id
          WHERE ug.user_id = $1 ORDER BY g.name",
        user
    )
    .fetch_all(db)
    .await
}

/// Of `names`, those that are no group.
pub async fn unknown_groups(db: impl PgExecutor<'_>, names: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT n AS "name!" FROM unnest($1::text[]) n
            WHERE NOT EXISTS (SELECT 1 FROM auth_group g WHERE g.name = n) ORDER BY n"#,
        names
    )
    .fetch_all(db)
    .await
}

/// Makes `names` (all existing groups) exactly the groups of `user`.
pub async fn set_user_groups(db: impl PgExecutor<'_>, user: Uuid, names: &[String]) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH wanted AS (SELECT id FROM auth_group WHERE name = ANY($2)),
              gone AS (DELETE FROM auth_user_groups WHERE user_id = $1 AND group_id NOT IN (SELECT id FROM wanted))
         INSERT INTO auth_user_groups (user_id, group_id) SELECT $1, id FROM wanted
         ON CONFLICT (user_id, group_id) DO NOTHING",
        user,
        names
    )
    .execute(db)
    .await?;
    Ok(())
}
