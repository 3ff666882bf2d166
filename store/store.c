/* placeholder: being written */
typedef int rp_placeholder_store;
