/* radprepd — placeholder main until scp/ lands. */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "radprepd: not built yet\n");
    return 1;
}
