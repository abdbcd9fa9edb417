//! The paths the `jwt` and `http` policies had in this crate before they moved to
//! `sidecast-auth` (decision 27) still name the same items, deprecated, for one release.
#![allow(deprecated)]

use std::any::TypeId;

#[test]
fn old_paths_name_the_moved_policies() {
    assert_eq!(
        TypeId::of::<sidecast_web::JwtAuth>(),
        TypeId::of::<sidecast_web::auth::JwtAuth>()
    );
    assert_eq!(
        TypeId::of::<sidecast_web::jwt::JwtAuth>(),
        TypeId::of::<sidecast_web::auth::jwt::JwtAuth>()
    );
    assert_eq!(
        TypeId::of::<sidecast_web::HttpAuth>(),
        TypeId::of::<sidecast_web::auth::HttpAuth>()
    );
    assert_eq!(
        TypeId::of::<sidecast_web::http_auth::HttpAuth>(),
        TypeId::of::<sidecast_web::auth::http::HttpAuth>()
    );
    assert_eq!(
        sidecast_web::jwt::JWT_POLICY,
        sidecast_web::auth::JWT_POLICY
    );
    assert_eq!(
        sidecast_web::http_auth::HTTP_POLICY,
        sidecast_web::auth::HTTP_POLICY
    );
}
